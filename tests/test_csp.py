"""The Content-Security-Policy: every page carries it, and no template holds what it would block (an inline script,
an on*= handler, an inline style). The pages working under it in Chromium: tests/test_csp_browser.py."""

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.http import HttpResponse, HttpResponseBase
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from tests.approvals.conftest import log_responded
from tests.factories import make_agent, make_proposal, user_with_role

TEMPLATES = Path(settings.BASE_DIR) / "templates"

# What the policy must say whatever else it allows: scripts and styles from this site's files only, no plugins, not
# framed, no <base> elsewhere.
REQUIRED = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "object-src": ["'none'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'self'"],
}


def policy_of(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


@pytest.fixture
def pages(db: None) -> dict[str, str]:
    """A page of every kind, with data: an agent, responded decisions and a proposal citing them."""
    agent, _ = make_agent()
    ids = log_responded(agent, prefix="csp", n=6, errors=2, start=timezone.now() - timedelta(days=2))
    proposal = make_proposal(agent, proposed=0.66, evidence_ids=ids)
    return {
        "login": "/accounts/login/",
        "dashboard": "/dashboard/",
        "dashboard agent": f"/dashboard/{agent.agent_id}/",
        "queue": "/queue/",
        "queue stats": "/queue/stats/",
        "decision": f"/decisions/{ids[0]}/",
        "proposals": "/proposals/",
        "proposal": f"/proposals/{proposal.pk}/",
        "new proposal": "/proposals/new/",
        "audit trail": "/audit/",
        "rollback": f"/rollback/{agent.agent_id}/",
        "admin index": "/admin/",
        "admin proposal": f"/admin/tuner/proposal/{proposal.pk}/change/",
        "api docs": "/api/docs/",
        "api": f"/api/v1/decisions/{ids[0]}",
        "not found": "/no-such-page/",
    }


def test_every_page__carries_the_policy__no_inline_or_eval_script(pages: dict[str, str]) -> None:
    anonymous, admin = Client(), Client()
    admin.force_login(user_with_role("admin", username="root-admin"))
    wrong = {}
    for name, url in pages.items():
        response = (anonymous if name == "login" else admin).get(url, secure=True)
        assert response.status_code in (200, 404), (name, url, response.status_code)
        header = response.get("Content-Security-Policy", "")
        policy = policy_of(header)
        if policy != settings.CONTENT_SECURITY_POLICY["DIRECTIVES"] or {k: policy.get(k) for k in REQUIRED} != REQUIRED:
            wrong[name] = header
    assert wrong == {}


class _Blocked(HTMLParser):
    """Collects what the policy would block in one template: inline scripts, on*= handlers and inline styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value for name, value in attrs}
        where = f"line {self.getpos()[0]}: <{tag}>"
        is_data = (names.get("type") or "").strip().lower() == "application/json"
        if tag == "script" and "src" not in names and not is_data:
            self.scripts.append(where)
        if tag == "style":
            self.styles.append(where)
        self.handlers += [f"{where} {name}=" for name in names if re.fullmatch(r"on[a-z]+", name)]
        if "style" in names:
            self.styles.append(f"{where} style=")


# Template syntax is replaced by neutral text first, so that `{% if x %} selected{% endif %}` inside a tag does
# not read as attributes; {# comments #} and {% comment %} blocks are dropped.
_TEMPLATE_SYNTAX = [
    (re.compile(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", re.S), ""),
    (re.compile(r"{#.*?#}", re.S), ""),
    (re.compile(r"{%.*?%}", re.S), " "),
    (re.compile(r"{{.*?}}", re.S), "x"),
]


def blocked_in(source: str) -> _Blocked:
    for pattern, replacement in _TEMPLATE_SYNTAX:
        source = pattern.sub(replacement, source)
    parser = _Blocked()
    parser.feed(source)
    parser.close()
    return parser


def html_templates() -> list[Path]:
    found = sorted(TEMPLATES.rglob("*.html"))
    assert found, f"no templates under {TEMPLATES}"
    return found


def test_templates__no_inline_script_and_no_event_handler_attribute() -> None:
    found = {}
    for path in html_templates():
        blocked = blocked_in(path.read_text())
        if blocked.scripts or blocked.handlers:
            found[str(path.relative_to(TEMPLATES))] = blocked.scripts + blocked.handlers
    assert found == {}


def test_templates__no_inline_style() -> None:
    found = {}
    for path in html_templates():
        blocked = blocked_in(path.read_text())
        if blocked.styles:
            found[str(path.relative_to(TEMPLATES))] = blocked.styles
    assert found == {}


@pytest.mark.parametrize(
    ("source", "scripts", "handlers", "styles"),
    [
        ('<script>go()</script><script src="/s.js"></script>', 1, 0, 0),
        ('{{ data|json_script:"x" }}<script type="application/json">{}</script>', 0, 0, 0),
        ('<script type="module">go()</script>', 1, 0, 0),
        ('<button onclick="go()">Go</button><select onChange="go()"></select>', 0, 2, 0),
        ('<option value="x"{% if one %} selected{% endif %}>{{ online }}</option>', 0, 0, 0),
        ('<span style="width: {{ w }}%"></span><style>p {}</style>', 0, 0, 2),
        ('{# <script>go()</script> #}<svg><rect width="{{ w }}"/></svg>', 0, 0, 0),
    ],
)
def test_blocked_in__finds_what_the_policy_blocks(source: str, scripts: int, handlers: int, styles: int) -> None:
    blocked = blocked_in(source)
    assert (len(blocked.scripts), len(blocked.handlers), len(blocked.styles)) == (scripts, handlers, styles)


# --- loopsite.csp: the policy built once, and every case django-csp decides itself still decided by it -------------


def _through_middleware(response_attrs: dict[str, object] | None = None) -> HttpResponseBase:
    from loopsite.csp import CSPMiddleware

    response = HttpResponse("ok")
    for name, value in (response_attrs or {}).items():
        setattr(response, name, value)
    request = RequestFactory().get("/")
    middleware = CSPMiddleware(lambda r: response)
    middleware.process_request(request)
    return middleware.process_response(request, response)


def test_csp_middleware__settings_changed__the_new_policy_not_the_one_built_before() -> None:
    first = _through_middleware()["Content-Security-Policy"]
    assert policy_of(first) == settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    with override_settings(CONTENT_SECURITY_POLICY={"DIRECTIVES": {"default-src": ["'none'"]}}):
        assert _through_middleware()["Content-Security-Policy"] == "default-src 'none'"
    assert _through_middleware()["Content-Security-Policy"] == first


def test_csp_middleware__a_view_updates_or_exempts_its_policy__django_csp_applies_it() -> None:
    updated = _through_middleware({"_csp_update": {"img-src": ["https://example.org"]}})
    assert policy_of(updated["Content-Security-Policy"])["img-src"] == ["'self'", "data:", "https://example.org"]
    assert "Content-Security-Policy" not in _through_middleware({"_csp_exempt": True})


def test_csp_middleware__a_report_only_policy_set__both_headers() -> None:
    report_only = {"DIRECTIVES": {"default-src": ["'self'"], "report-uri": ["/csp-report/"]}}
    with override_settings(CONTENT_SECURITY_POLICY_REPORT_ONLY=report_only):
        response = _through_middleware()
    assert policy_of(response["Content-Security-Policy"]) == settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    assert "report-uri /csp-report/" in response["Content-Security-Policy-Report-Only"]


def test_csp_middleware__a_nonce_used_by_the_page__in_the_header() -> None:
    from csp.constants import NONCE

    from loopsite.csp import CSPMiddleware

    directives = {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"], "script-src": ["'self'", NONCE]}
    with override_settings(CONTENT_SECURITY_POLICY={"DIRECTIVES": directives}):
        request = RequestFactory().get("/")
        response = HttpResponse("ok")
        middleware = CSPMiddleware(lambda r: response)
        middleware.process_request(request)
        nonce = str(request.csp_nonce)  # type: ignore[attr-defined]
        header = middleware.process_response(request, response)["Content-Security-Policy"]
    assert f"'nonce-{nonce}'" in policy_of(header)["script-src"]
