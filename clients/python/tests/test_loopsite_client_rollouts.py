"""Shadow and canary: what the client logs while a proposal runs in shadow, and which arm a session decides in."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from fake_loopsite import CONFIG, KEY, FakeServer, entry

from loopsite_client import Client, Config, Response, canary_draw
from loopsite_client.config import ConfigFile

SYNC: dict[str, Any] = {"poll_interval": None, "background": False, "max_backoff": 0.05}
LIVE = {**CONFIG, "version": 7}  # flag_threshold 0.6, escalate_threshold 0.85
SHADOW = {"escalate_threshold": 0.65, "proposalId": 12}
CANARY = {"share": 0.2, "values": {"flag_threshold": 0.5, "escalate_threshold": 0.8}, "version": 8}
IN_CANARY = "s-1"  # canary_draw("s-1", 8) = 0.0379...: in a 0.2 canary of version 8
IN_CONTROL = "batch-0302"  # canary_draw("batch-0302", 8) = 0.9100...


class InMemory:
    """Hands each request to the fake server's logic directly; ``down`` makes it fail as an unreachable server."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.down = False

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        if self.down:
            raise ConnectionRefusedError("down")
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        status, extra, payload = self.server.answer(method, path, lower, body or b"")
        return Response(status, {k.lower(): v for k, v in extra.items()}, payload)


def serving(**fields: Any) -> FakeServer:
    server = FakeServer()  # never started: the transport calls it in-process
    server.config = {**LIVE, **fields}
    return server


def client_for(server: FakeServer, spool: Path) -> Client:
    return Client("inproc://", KEY, spool, transport=InMemory(server), **SYNC)


def decided(client: Client, confidence: float, session_id: str | None = None, **decision: Any) -> dict[str, Any]:
    """An entry as an agent logs it: decided by ``client.decide`` under the session it is logged with."""
    action, name, used = client.decide(confidence, session_id)
    logged = entry(action=action, confidence=confidence, thresholdUsed=used, thresholdName=name, **decision)
    if session_id is not None:
        logged["sessionId"] = session_id
    return logged


def stored(client: Client, server: FakeServer, logged: dict[str, Any]) -> dict[str, Any]:
    entry_id = client.log(logged)
    assert client.flush(timeout=5)
    return server.stored[entry_id]


# --- The draw -----------------------------------------------------------------------------------------------


def test_canary_draw__the_rule_the_server_applies__fixed_values_for_known_ids():
    # Computed once with the server's rollouts/arms.py; a change to the rule on one side fails here.
    assert canary_draw("s-1", 8) == 0.037930228423184956
    assert canary_draw("batch-0302", 8) == 0.9100391269562581
    assert canary_draw("batch-0302", 9) == 0.42524979880970915  # the version salts the draw
    assert canary_draw("session-é", 3) == 0.6367675402209915  # UTF-8
    assert canary_draw("", 1) == 0.028701776919698007


def test_canary_draw__first_8_bytes_of_sha256_of_version_colon_session():
    for session in ("a", "batch-0302", "x" * 300):
        digest = hashlib.sha256(f"8:{session}".encode()).digest()
        assert canary_draw(session, 8) == int.from_bytes(digest[:8], "big") / 2**64


def test_canary__about_a_fifth_of_10000_sessions_in_a_0_2_canary():
    config = Config.from_json({**LIVE, "canary": CANARY}, etag=None)
    inside = sum(config.in_canary(f"session-{i}") for i in range(10_000))
    assert 1_850 <= inside <= 2_150  # 2,000 expected, sd 40
    assert not Config.from_json(LIVE, etag=None).in_canary("s-1")  # no canary: nobody is in it


# --- Shadow -------------------------------------------------------------------------------------------------


def test_shadow__each_logged_decision_carries_what_the_candidate_would_have_done(spool: Path):
    server = serving(shadow=SHADOW)
    with client_for(server, spool) as client:
        assert client.decide(0.7) == ("flag", "flag_threshold", 0.6)  # the agent still decides on the live values
        logged = decided(client, 0.7)
        flagged = stored(client, server, logged)
        low = stored(client, server, decided(client, 0.3))
    assert flagged["decision"]["shadowAction"] == "escalate"  # 0.7 reaches the candidate 0.65
    assert flagged["decision"]["shadowProposalId"] == 12
    assert flagged["decision"]["action"] == "flag" and flagged["configVersion"] == 7
    assert low["decision"]["shadowAction"] == "auto-resolve"
    assert "shadowAction" not in logged["decision"]  # the caller's dict is left as it was


def test_shadow__absent__nothing_added(spool: Path):
    server = serving()
    with client_for(server, spool) as client:
        kept = stored(client, server, decided(client, 0.7))
    assert "shadowAction" not in kept["decision"] and "shadowProposalId" not in kept["decision"]
    assert kept["configVersion"] == 7


def test_shadow__the_callers_shadow_action_is_kept(spool: Path):
    server = serving(shadow=SHADOW)
    with client_for(server, spool) as client:
        kept = stored(client, server, decided(client, 0.7, shadowAction="flag", shadowProposalId=11))
    assert kept["decision"]["shadowAction"] == "flag" and kept["decision"]["shadowProposalId"] == 11


def test_shadow__no_numeric_confidence__nothing_added(spool: Path):
    server = serving(shadow=SHADOW)
    with client_for(server, spool) as client:
        logged = decided(client, 0.7)
        logged["decision"]["confidence"] = "high"
        no_number = stored(client, server, logged)
        logged = decided(client, 0.7)
        del logged["decision"]["confidence"]
        missing = stored(client, server, logged)
    assert "shadowAction" not in no_number["decision"] and "shadowAction" not in missing["decision"]


# --- Canary -------------------------------------------------------------------------------------------------


def test_canary__arm_session_decides_with_the_canary_values_and_logs_the_canary_version(spool: Path):
    server = serving(canary=CANARY)
    with client_for(server, spool) as client:
        assert client.decide(0.55, IN_CANARY) == ("flag", "flag_threshold", 0.5)
        assert client.decide(0.55, IN_CONTROL) == ("auto-resolve", "flag_threshold", 0.6)
        assert client.decide(0.55) == ("auto-resolve", "flag_threshold", 0.6)  # no session: the live values
        canary = stored(client, server, decided(client, 0.55, IN_CANARY))
        control = stored(client, server, decided(client, 0.55, IN_CONTROL))
        arm = client.config().arm_config(IN_CANARY)
    assert canary["configVersion"] == 8 and canary["decision"]["action"] == "flag"
    assert control["configVersion"] == 7 and control["decision"]["action"] == "auto-resolve"
    assert arm.version == 8 and arm.thresholds == CANARY["values"]


def test_canary__arm_session_that_decided_on_the_live_value__keeps_the_live_version(spool: Path):
    server = serving(canary=CANARY)
    with client_for(server, spool) as client:
        logged = entry(action="flag", confidence=0.7, thresholdUsed=0.6, thresholdName="flag_threshold")
        logged["sessionId"] = IN_CANARY  # decided without the session id: on the live 0.6, not the canary's 0.5
        kept = stored(client, server, logged)
    assert kept["configVersion"] == 7


def test_canary_and_shadow__the_candidate_is_laid_over_the_sessions_arm(spool: Path):
    server = serving(canary=CANARY, shadow={"flag_threshold": 0.55, "proposalId": 12})
    with client_for(server, spool) as client:
        canary = stored(client, server, decided(client, 0.82, IN_CANARY))
        control = stored(client, server, decided(client, 0.82, IN_CONTROL))
        config = client.config()
    assert canary["decision"]["action"] == "escalate" and canary["decision"]["shadowAction"] == "escalate"  # 0.8
    assert control["decision"]["action"] == "flag" and control["decision"]["shadowAction"] == "flag"  # 0.85
    assert config.shadow_action(0.57, IN_CANARY) == "flag" and config.shadow_action(0.57) == "flag"
    assert config.shadow_action(0.52, IN_CANARY) == "auto-resolve"


def test_canary_arm__same_for_1000_sessions_after_a_restart_and_from_the_copy_on_disk(spool: Path):
    server = serving(canary=CANARY, shadow=SHADOW)
    sessions = [f"session-{i}" for i in range(1_000)]
    with client_for(server, spool) as client:
        arms = [client.config().in_canary(s) for s in sessions]
        decisions = [client.decide(0.55, s) for s in sessions]
    assert 100 < sum(arms) < 300  # both arms are exercised

    with client_for(server, spool) as again:
        assert [again.config().in_canary(s) for s in sessions] == arms

    transport = InMemory(server)
    transport.down = True
    with Client("inproc://", KEY, spool, transport=transport, **SYNC) as offline:
        config = offline.config()
        assert config.from_disk and config.canary is not None and config.shadow is not None
        assert [config.in_canary(s) for s in sessions] == arms
        assert [offline.decide(0.55, s) for s in sessions] == decisions
        assert config.shadow_action(0.7) == "escalate"

    on_disk = ConfigFile(spool, key_fingerprint=hashlib.sha256(KEY.encode()).hexdigest()[:16]).load()
    assert on_disk is not None and [on_disk.in_canary(s) for s in sessions] == arms


def test_config__shadow_and_canary_round_trip_through_json():
    config = Config.from_json({**LIVE, "shadow": SHADOW, "canary": CANARY}, etag='"e"')
    assert config.as_json()["shadow"] == SHADOW and config.as_json()["canary"] == CANARY
    assert Config.from_json(config.as_json(), etag='"e"') == config
    plain = Config.from_json({**LIVE, "shadow": None, "canary": None}, etag=None)
    assert plain.shadow is None and plain.canary is None
    assert "shadow" not in plain.as_json() and "canary" not in plain.as_json()


# --- A bad optional field never stops an agent --------------------------------------------------------------

MALFORMED = [
    pytest.param({"shadow": "escalate_threshold=0.65"}, id="shadow-not-an-object"),
    pytest.param({"shadow": {"escalate_threshold": 0.65}}, id="shadow-without-proposal-id"),
    pytest.param({"shadow": {"escalate_threshold": 0.65, "proposalId": "12"}}, id="shadow-proposal-id-a-string"),
    pytest.param({"shadow": {"escalate_threshold": "0.65", "proposalId": 12}}, id="shadow-value-a-string"),
    pytest.param({"shadow": {"proposalId": 12}}, id="shadow-without-a-value"),
    pytest.param({"shadow": {"unknown_threshold": 0.65, "proposalId": 12}}, id="shadow-unknown-threshold"),
    pytest.param({"canary": [0.2, {}, 8]}, id="canary-not-an-object"),
    pytest.param({"canary": {**CANARY, "share": "0.2"}}, id="canary-share-a-string"),
    pytest.param({"canary": {**CANARY, "share": 1.5}}, id="canary-share-above-1"),
    pytest.param({"canary": {**CANARY, "version": None}}, id="canary-without-version"),
    pytest.param({"canary": {**CANARY, "values": {"flag_threshold": 0.5}}}, id="canary-missing-a-threshold"),
    pytest.param({"canary": {**CANARY, "values": None}}, id="canary-without-values"),
    pytest.param({"canary": {**CANARY, "values": {"flag_threshold": 0.5, "escalate_threshold": True}}}, id="bool"),
]


@pytest.mark.parametrize("fields", MALFORMED)
def test_malformed_shadow_or_canary__ignored_with_a_warning__live_values_used(
    fields: dict[str, Any], spool: Path, caplog: pytest.LogCaptureFixture
):
    server = serving(**fields)
    with caplog.at_level(logging.WARNING, logger="loopsite_client"), client_for(server, spool) as client:
        config = client.config()
        assert config.version == 7 and config.shadow is None and config.canary is None
        assert client.decide(0.55, IN_CANARY) == ("auto-resolve", "flag_threshold", 0.6)
        kept = stored(client, server, decided(client, 0.7, IN_CANARY))
    assert kept["configVersion"] == 7 and "shadowAction" not in kept["decision"]
    assert [r for r in caplog.records if r.getMessage() == "loopsite_client.config_field_ignored"]
