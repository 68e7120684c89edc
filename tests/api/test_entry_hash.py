from dataclasses import asdict

from auditlog.entry import _content, entry_parse
from tests.factories import NOW, entry


def test_entry_content__built_by_hand__same_as_asdict_so_stored_hashes_still_match():
    with_response = entry(
        humanResponse={"action": "modify", "modifiedAction": "escalate", "responderId": "rita", "note": "n"}
    )
    for raw in (entry(), with_response, entry(decision={"thresholdName": "flag_threshold"})):
        parsed = entry_parse(raw, now=NOW)
        expected = asdict(parsed)
        del expected["content_hash"], expected["id_given"]
        assert _content(parsed) == expected
