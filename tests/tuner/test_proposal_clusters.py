"""Each proposal names the clusters it addresses: stored by the cycle, read through the API, made by hand too."""

import json
from typing import Any

import pytest

from auditlog.models import Decision
from tests.conftest import client_for
from tests.factories import NOW, make_agent
from tests.tuner.helpers import log_rows
from tests.tuner.test_claude import answer, answering, ids, proposal
from tests.tuner.test_cycle import flag_too_low_rows, stat_run
from thresholds.models import Agent
from tuner.models import Cluster, Proposal
from tuner.services import tuner_cycle_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _model_name(settings: Any) -> None:
    settings.TUNER_MODEL = "claude-test-model"


@pytest.fixture
def window_agent() -> Agent:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    return agent


def test_cycle__statistical_proposal__names_the_dismissal_cluster_in_its_band(window_agent: Agent) -> None:
    run = stat_run(window_agent)

    p = Proposal.objects.get(run=run)
    assert (p.direction, p.current_value, p.proposed_value) == ("increase", 0.6, 0.7)
    assert p.clusters, "the proposal names no cluster"
    top = p.clusters[0]
    stored = Cluster.objects.filter(run=run, kind="dismiss").order_by("-size").first()
    assert stored is not None
    assert (top["kind"], top["label"], top["size"]) == ("dismiss", stored.label, stored.size)
    assert {f["feature"] for f in top["distinguishingFeatures"]} >= {"night"}
    assert top["confidenceRange"][0] < 0.7 and top["confidenceRange"][1] >= 0.6
    members = Decision.objects.filter(agent=window_agent, entry_id__in=top["sampleEntryIds"])
    assert members.count() == len(top["sampleEntryIds"]) >= 5
    assert all(d.response_action == "dismiss" and 0.6 <= (d.confidence or 0) < 0.7 for d in members)
    # Escalation clusters are not what an increase answers.
    assert all(c["kind"] == "dismiss" for c in p.clusters)


def test_cycle__claude_proposal__names_its_clusters_and_the_model_still_receives_them(window_agent: Agent) -> None:
    fake = answering(answer(proposal(sampleEntryIds=ids(window_agent, "dismiss", 0.6, 0.68))))

    run = tuner_cycle_run(agent=window_agent, now=NOW, generator=fake.generator())

    payload = json.loads(fake.requests[0]["messages"][0]["content"])
    assert payload["dismissalClusters"][0]["sampleEntryIds"]
    p = Proposal.objects.get(run=run)
    assert p.clusters and p.clusters[0]["kind"] == "dismiss"


def test_proposal_get__api__clusters_with_label_size_features_and_sample_ids(
    window_agent: Agent, approver: Any
) -> None:
    run = stat_run(window_agent)
    p = Proposal.objects.get(run=run)

    body = client_for(approver).get(f"/api/v1/proposals/{p.pk}").json()

    assert body["clusters"] == p.clusters and body["clusters"]
    assert set(body["clusters"][0]) >= {"kind", "label", "size", "distinguishingFeatures", "sampleEntryIds"}
    listed = client_for(approver).get(f"/api/v1/agents/{window_agent.agent_id}/proposals").json()["results"]
    assert listed[0]["clusters"] == p.clusters


def test_openapi_schema__proposal_documents_its_clusters(approver: Any) -> None:
    response = client_for(approver).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json() if response["Content-Type"].endswith("json") else None
    text = response.content.decode()
    assert "ProposalClusterOut" in text and "sampleEntryIds" in text
    if schema is not None:
        props = schema["components"]["schemas"]["ProposalOut"]["properties"]
        assert props["clusters"]["type"] == "array"


def test_manual_proposal__names_the_latest_cycles_clusters_in_its_band(window_agent: Agent, approver: Any) -> None:
    stat_run(window_agent)
    Proposal.objects.update(status=Proposal.Status.REJECTED)

    response = client_for(approver).post(
        f"/api/v1/agents/{window_agent.agent_id}/proposals",
        {"thresholdName": "flag_threshold", "proposedValue": 0.66, "rationale": "night false alarms"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["clusters"] and response.json()["clusters"][0]["kind"] == "dismiss"
    lowered = client_for(approver).post(
        f"/api/v1/agents/{window_agent.agent_id}/proposals",
        {"thresholdName": "flag_threshold", "proposedValue": 0.55, "rationale": "catch more"},
        format="json",
    )
    assert lowered.status_code == 201 and lowered.json()["clusters"] == []
