"""Every role against every page and API endpoint: allowed or refused as it should be.

Roles: anonymous, reviewer, approver, admin (superuser), and an agent's API key. People reach the API with their
personal tokens (Bearer lsu_...) and the pages with a session; an agent key on a page counts for nothing.

Table-driven: a new page or endpoint is one ``Case`` line. A page refuses anonymous visitors by sending them to
sign in, and signed-in people without the role with 403; the API refuses with 401 or 403. "Allowed" means the
request got past the door: any other status (a 400 for a body the view dislikes is still "allowed").
"""

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import resolve

from approvals.services import proposal_decide
from people.services import token_create
from rollouts.models import Canary
from rollouts.services import Rollout
from tests.factories import NOW, entry, make_agent, make_proposal, user_with_role
from tests.web.conftest import log_pending

ANON, REVIEWER, APPROVER, ADMIN, AGENT = "anonymous", "reviewer", "approver", "admin", "agent key"
ROLES = (ANON, REVIEWER, APPROVER, ADMIN, AGENT)
PEOPLE = frozenset({REVIEWER, APPROVER, ADMIN})
APPROVERS = frozenset({APPROVER, ADMIN})
EVERYONE = frozenset(ROLES)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # placeholders: {agent} {entry} {proposal}
    allowed: frozenset[str]
    page: bool = False
    body: dict[str, Any] | None = field(default=None, hash=False)
    form: dict[str, Any] | None = field(default=None, hash=False)


CASES = [
    # --- pages -------------------------------------------------------------------------------------------
    Case("home", "GET", "/", PEOPLE, page=True),
    Case("queue", "GET", "/queue/", PEOPLE, page=True),
    Case(
        "queue respond",
        "POST",
        "/queue/respond/",
        PEOPLE,
        page=True,
        form={"entry_id": "{entry}", "response": "approve"},
    ),
    Case("queue claim", "POST", "/queue/claim/", PEOPLE, page=True, form={"entry_id": "{entry}"}),
    Case("queue header figures", "GET", "/queue/stats/", PEOPLE, page=True),
    Case("proposal list", "GET", "/proposals/", APPROVERS, page=True),
    Case("proposal detail", "GET", "/proposals/{proposal}/", APPROVERS, page=True),
    Case("comment on a proposal", "POST", "/proposals/{proposal}/comment/", APPROVERS, page=True, form={"text": "hm"}),
    Case("proposal new", "GET", "/proposals/new/", APPROVERS, page=True),
    Case("audit trail", "GET", "/audit/", APPROVERS, page=True),
    Case("config rollback page", "GET", "/rollback/{agent}/", APPROVERS, page=True),
    Case("dashboard", "GET", "/dashboard/", PEOPLE, page=True),
    Case("agent dashboard", "GET", "/dashboard/{agent}/", PEOPLE, page=True),
    Case("admin", "GET", "/admin/", APPROVERS, page=True),  # reviewers stay out of the admin
    Case("decision page", "GET", "/decisions/{entry}/", PEOPLE, page=True),
    Case("lock from the dashboard", "POST", "/lock/{agent}/", APPROVERS, page=True, form={"rationale": "done"}),
    Case("a change under watch", "GET", "/watch/{agent}/v1/", APPROVERS, page=True),
    Case("end a canary on its page", "POST", "/proposals/{proposal}/canary/abort/", APPROVERS, page=True, form={}),
    # --- API ---------------------------------------------------------------------------------------------
    # "staff" in the contract: admins, and approvers, who are staff so that they can sign off in the admin.
    Case("live config", "GET", "/api/v1/agents/{agent}/config", frozenset({ADMIN, APPROVER, AGENT})),
    Case("config versions", "GET", "/api/v1/agents/{agent}/config/versions", frozenset({ADMIN, APPROVER, AGENT})),
    Case("log a decision", "POST", "/api/v1/decisions", frozenset({AGENT}), body=entry("triage")),
    Case("log a batch", "POST", "/api/v1/decisions/batch", frozenset({AGENT}), body={"entries": [entry("triage")]}),
    Case("list decisions", "GET", "/api/v1/decisions", PEOPLE | {AGENT}),
    Case("read a decision", "GET", "/api/v1/decisions/{entry}", PEOPLE | {AGENT}),
    Case("respond", "POST", "/api/v1/decisions/{entry}/response", PEOPLE, body={"action": "dismiss"}),
    Case("proposals of an agent", "GET", "/api/v1/agents/{agent}/proposals", APPROVERS),
    Case(
        "propose by hand",
        "POST",
        "/api/v1/agents/{agent}/proposals",
        APPROVERS,
        body={"thresholdName": "flag_threshold", "proposedValue": 0.65, "rationale": "noisy"},
    ),
    Case("lock state", "GET", "/api/v1/agents/{agent}/lock", APPROVERS),
    Case("lock", "POST", "/api/v1/agents/{agent}/lock", APPROVERS, body={"rationale": "converged"}),
    Case("unlock", "POST", "/api/v1/agents/{agent}/unlock", APPROVERS, body={"rationale": "new season"}),
    Case("own config (agent client)", "GET", "/api/v1/config", frozenset({AGENT})),
    Case("read a proposal", "GET", "/api/v1/proposals/{proposal}", APPROVERS),
    Case(
        "decide a proposal",
        "POST",
        "/api/v1/proposals/{proposal}/decision",
        APPROVERS,
        body={"decision": "reject", "rationale": "not this week"},
    ),
    Case("tuner runs", "GET", "/api/v1/agents/{agent}/tuner-runs", APPROVERS),
    Case("run the tuner now", "POST", "/api/v1/agents/{agent}/tuner-runs", APPROVERS),
    Case("weekly metrics", "GET", "/api/v1/agents/{agent}/metrics/weekly", PEOPLE),
    Case("evaluation set", "GET", "/api/v1/agents/{agent}/evaluation-set.csv", PEOPLE),
    Case("proposal discussion", "GET", "/api/v1/proposals/{proposal}/comments", APPROVERS),
    Case("audit trail API", "GET", "/api/v1/audit", APPROVERS),
    Case("a canary", "GET", "/api/v1/canaries/{canary}", APPROVERS),
    Case("promote a canary", "POST", "/api/v1/canaries/{canary}/promote", APPROVERS, body={"rationale": "fine"}),
    Case("abort a canary", "POST", "/api/v1/canaries/{canary}/abort", APPROVERS, body={"rationale": "no"}),
    Case("OpenAPI schema", "GET", "/api/schema/", EVERYONE),
    Case("API docs", "GET", "/api/docs/", EVERYONE),
    Case("health", "GET", "/healthz", EVERYONE),
    Case("health, with a slash", "GET", "/healthz/", EVERYONE),
]


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    agent, key = make_agent("triage")
    [entry_id] = log_pending("triage", 1)
    proposal = make_proposal(agent)
    # A second agent with a canary serving, so its endpoints answer for the roles allowed.
    canaried, _ = make_agent("canaried")
    owner = user_with_role(APPROVER, username="matrix-canary-owner")
    started = make_proposal(canaried)
    proposal_decide(proposal=started, actor=owner, decision="accept", rationale="r", now=NOW, canary=Rollout(0.2, 7))
    canary = Canary.objects.get(proposal=started)
    return {"agent": agent.agent_id, "entry": entry_id, "proposal": proposal.pk, "agent_key": key, "canary": canary.pk}


def _fill(value: Any, world: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


def _client(role: str, world: dict[str, Any], *, page: bool) -> Client:
    client = Client()
    if role == AGENT:
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {world['agent_key']}"
    elif role != ANON:
        user = user_with_role(role, username=f"matrix-{role}")
        if page:
            client.force_login(user)
        else:
            _token, key = token_create(user=user)
            client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def _refused(case: Case, role: str, response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    if case.page and response.status_code == 302:
        location = response["Location"]
        return location.startswith("/accounts/login/") or location.startswith("/admin/login/")
    return False


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_roles_matrix__each_role_each_endpoint__allowed_or_refused(
    case: Case, role: str, world: dict[str, Any]
) -> None:
    path = _fill(case.path, world)
    resolve(path.split("?")[0])  # the route exists; a vanished one fails here rather than passing as a 404
    client = _client(role, world, page=case.page)
    if case.method == "GET":
        response = client.get(path)
    elif case.body is not None:
        response = client.post(path, data=_fill(case.body, world), content_type="application/json")
    else:
        response = client.post(path, data=_fill(case.form or {}, world))
    refused = _refused(case, role, response)
    expected = role not in case.allowed
    assert refused == expected, (
        f"{role} on {case.method} {path}: got {response.status_code}, expected {'refused' if expected else 'allowed'}"
    )
    if refused and case.page and role in (ANON, AGENT):
        # anonymous visitors (and agent keys, which carry no session) are sent to sign in
        assert response.status_code == 302
    if not refused:
        assert response.status_code < 500


def test_roles_matrix__every_route_is_in_the_table() -> None:
    """A page or endpoint added to the URLconf without a line here fails, so the matrix stays complete."""
    from django.urls import get_resolver

    def walk(patterns: Any, prefix: str = "") -> list[str]:
        out = []
        for p in patterns:
            if hasattr(p, "url_patterns"):
                if str(p.pattern) != "admin/":
                    out += walk(p.url_patterns, prefix + str(p.pattern))
            else:
                out.append(prefix + str(p.pattern))
        return out

    def shape(path: str) -> str:
        return (
            path.replace("{agent}", "<str:agent_id>")
            .replace("{entry}", "<str:entry_id>")
            .replace("{canary}", "<str:canary_id>")
        )

    covered = {shape(c.path).lstrip("/") for c in CASES}
    covered |= {c.lstrip("/") for c in ("/accounts/login/", "/accounts/logout/")}
    routes = walk(get_resolver().url_patterns)
    normalised = {
        r.replace("<int:pk>", "{proposal}")
        .replace("<str:proposal_id>", "{proposal}")
        .replace("v<int:number>", "v1")
        .replace(".<str:fmt>", ".csv")
        .replace("<str:action>", "abort")
        for r in routes
    }
    missing = sorted(r for r in normalised if r not in covered and r != "")
    assert missing == [], f"routes without a line in the roles matrix: {missing}"
