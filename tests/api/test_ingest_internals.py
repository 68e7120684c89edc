from dataclasses import asdict

import pytest

from auditlog.entry import _content, entry_parse
from auditlog.services import decision_log
from tests.factories import NOW, entry
from thresholds.models import ConfigVersion


def test_entry_content__built_by_hand__same_as_asdict_so_stored_hashes_still_match():
    with_response = entry(
        humanResponse={"action": "modify", "modifiedAction": "escalate", "responderId": "rita", "note": "n"}
    )
    for raw in (entry(), with_response, entry(decision={"thresholdName": "flag_threshold"})):
        parsed = entry_parse(raw, now=NOW)
        expected = asdict(parsed)
        del expected["content_hash"], expected["id_given"], expected["features_json"]  # derived, not content
        # configVersion and the shadow count only when sent, so hashes stored before they existed still match.
        del expected["config_version"], expected["shadow_action"], expected["shadow_proposal_id"]
        assert _content(parsed) == expected
    versioned = entry_parse(entry(configVersion=1), now=NOW)
    assert _content(versioned)["config_version"] == 1
    assert versioned.content_hash != entry_parse(entry(), now=NOW).content_hash
    shadow = {"shadowAction": "auto-resolve", "shadowProposalId": 4}
    shadowed = entry_parse(entry(id="same", decision=shadow), now=NOW)
    assert _content(shadowed)["shadow"] == [["auto-resolve", 4]]
    assert shadowed.content_hash != entry_parse(entry(id="same"), now=NOW).content_hash


@pytest.mark.django_db
def test_decision_log__logged_decision__config_version_complete_on_access(agent):
    _, decision = decision_log(raw=entry(), now=NOW)
    live = ConfigVersion.objects.get(agent=agent, is_live=True)
    assert decision.config_version.number == 1
    # Fields not loaded up front still read right (they load on access).
    assert (decision.config_version.source, decision.config_version.values) == ("initial", live.values)
