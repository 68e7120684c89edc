import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from auditlog.models import Decision
from auditlog.services import decision_log
from tests.factories import entry, make_agent
from tests.web.conftest import log_pending

pytestmark = pytest.mark.django_db

# A response time after the decisions (logged an hour before now) and not in the future.
AT = (timezone.now() - timedelta(minutes=5)).isoformat()


def run(path: Path, *args: str) -> str:
    """What the command printed, and the error it stopped with (its exit status 1) as a last line."""
    out = StringIO()
    try:
        call_command("import_responses", str(path), *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return f"{out.getvalue()}CommandError: {exc}"
    return out.getvalue()


def responses() -> dict[str, tuple[Any, ...]]:
    return {
        d.entry_id: (d.response_action, d.responder_id, d.modified_action, d.response_note, d.response_source)
        for d in Decision.objects.exclude(response_action=None)
    }


@pytest.fixture
def ids(agent: Any) -> list[str]:
    return log_pending(agent.agent_id, 4)


def test_import__good_file__every_row_taken(tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / "good.csv"
    path.write_text(
        "decisionId,action,responderId,respondedAt,modifiedAction,note\n"
        f"{ids[0]},approve,sam@team,{AT},,\n"
        f'{ids[1]},modify,sam@team,{AT},escalate,"looks like fraud, really"\n'
        f"{ids[2]},Dismiss,kim,{AT},,noise\n"
    )
    out = run(path)
    assert "3 row(s) taken, 0 refused, of 3." in out
    assert responses() == {
        ids[0]: ("approve", "sam@team", None, None, "import"),
        ids[1]: ("modify", "sam@team", "escalate", "looks like fraud, really", "import"),
        ids[2]: ("dismiss", "kim", None, "noise", "import"),
    }
    first = Decision.objects.get(entry_id=ids[0])
    assert first.responded_at is not None
    assert first.time_to_respond == (first.responded_at - first.timestamp).total_seconds()


def mixed_file(tmp_path: Path, ids: list[str]) -> Path:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "id,action,responder,respondedAt,modifiedAction,note\n"
        f"{ids[0]},approve,sam,{AT},,\n"  # row 2: fine
        f"no-such-decision,approve,sam,{AT},,\n"  # row 3: unknown
        f"{ids[0]},dismiss,kim,{AT},,\n"  # row 4: already answered (row 2)
        f"{ids[1]},shrug,sam,{AT},,\n"  # row 5: unknown action
        f"{ids[2]},modify,sam,{AT},,\n"  # row 6: modify without the action
        f"{ids[3]},approve,,{AT},,\n"  # row 7: no responder
        f"{ids[3]},approve,sam,yesterday,,\n"  # row 8: bad time
    )
    return path


def test_import__bad_rows__exit_1_and_nothing_written(tmp_path: Path, ids: list[str]) -> None:
    """It used to exit 0 whatever was refused."""
    out = run(mixed_file(tmp_path, ids))
    assert "1 row(s) would be taken, 6 refused, of 7." in out and "row 3: refused:" in out
    assert "Nothing was written: fix the refused rows, or pass --allow-partial" in out
    assert out.endswith("CommandError: 6 of 7 row(s) refused")
    assert responses() == {}


def test_import__bad_rows_allow_partial__reported_with_row_and_reason_good_rows_taken(
    tmp_path: Path, ids: list[str]
) -> None:
    out = run(mixed_file(tmp_path, ids), "--allow-partial")
    assert "CommandError" not in out
    assert "1 row(s) taken, 6 refused, of 7." in out
    assert "row 3: refused: no decision with id 'no-such-decision'" in out
    assert "row 4: refused:" in out and "has a response already" in out
    assert "row 5: refused:" in out and "must be one of approve, dismiss, modify, escalate" in out
    assert "row 6: refused:" in out and "modifiedAction is required" in out
    assert "row 7: refused: responder is empty" in out
    assert "row 8: refused: response.respondedAt is not an ISO 8601 time" in out
    assert responses() == {ids[0]: ("approve", "sam", None, None, "import")}


@pytest.mark.parametrize(
    ("name", "message"),
    [("export.xlsx", "export.xlsx is not an Excel .xlsx file"), ("export.csv", "export.csv is not a CSV file")],
)
def test_import__binary_garbage__command_error_nothing_written(
    tmp_path: Path, ids: list[str], name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00binary spreadsheet")
    assert f"CommandError: {message}" in run(path)
    assert responses() == {}


def test_import__xlsx__rows_taken_dates_and_numbers_read(tmp_path: Path, ids: list[str]) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Decision ID", "Action", "Responder", "Responded at", "Note"])
    at = datetime.fromisoformat(AT).astimezone(UTC).replace(tzinfo=None)  # Excel keeps no time zone: read as UTC
    sheet.append([ids[0], "dismiss", "kim", at, 42.0])
    sheet.append([ids[1], "Escalate", "sam", AT, None])
    sheet.append([None, None, None, None, None])
    path = tmp_path / "verdicts.xlsx"
    book.save(path)

    assert "2 row(s) taken, 0 refused, of 2." in run(path)
    assert responses() == {
        ids[0]: ("dismiss", "kim", None, "42", "import"),
        ids[1]: ("escalate", "sam", None, None, "import"),
    }
    responded = Decision.objects.get(entry_id=ids[0]).responded_at
    assert responded is not None and abs(responded - datetime.fromisoformat(AT)) < timedelta(seconds=1)


def test_import__json_file__missing_columns_command_error(tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / "responses.csv"
    path.write_text(json.dumps([{"id": ids[0], "action": "approve"}]))
    assert "CommandError: not a responses CSV: missing column" in run(path)
    assert responses() == {}


def test_import__dry_run__reports_but_writes_nothing(tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / "good.csv"
    path.write_text(f"decision id,action,responder,respondedAt\n{ids[0]},approve,sam,{AT}\n{ids[0]},dismiss,sam,{AT}\n")
    out = run(path, "--dry-run")
    assert "1 row(s) would be taken, 1 refused, of 2." in out and out.endswith("CommandError: 1 of 2 row(s) refused")
    assert "row 3: refused:" in out
    assert "nothing was written" in out
    assert responses() == {}


def test_import__long_file__progress_bar_and_every_row_reported(tmp_path: Path, ids: list[str]) -> None:
    lines = ["id,action,responder,respondedAt"]
    lines.append(f"{ids[0]},approve,sam,{AT}")
    lines += [f"missing-{i},approve,sam,{AT}" for i in range(600)]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    out, err = StringIO(), StringIO()
    call_command("import_responses", str(path), "--allow-partial", stdout=out, stderr=err)
    assert "1 row(s) taken, 600 refused, of 601." in out.getvalue()
    assert "row 602: refused: no decision with id 'missing-599'" in out.getvalue()
    assert "601/601" in err.getvalue()  # tqdm's bar reached the end
    assert responses() == {ids[0]: ("approve", "sam", None, None, "import")}


def test_import__semicolon_spreadsheet_export__columns_found(tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(f"Decision ID;Action;Responder ID;Responded At;Note\n{ids[0]};escalate;kim;{AT};missed one\n")
    assert "1 row(s) taken, 0 refused, of 1." in run(path)
    assert responses() == {ids[0]: ("escalate", "kim", None, "missed one", "import")}


def test_import__id_two_agents_use__refused_without_agentId_taken_with_it(tmp_path: Path, agent: Any) -> None:
    make_agent("fraud")
    now = timezone.now()
    for agent_id in ("triage", "fraud"):
        decision_log(raw=entry(agent_id, id="shared", timestamp=(now - timedelta(hours=1)).isoformat()), now=now)
    path = tmp_path / "shared.csv"
    path.write_text(
        "id,agent_id,action,responder,respondedAt\n"
        f"shared,,approve,sam,{AT}\n"  # row 2: whose?
        f"shared,fraud,dismiss,sam,{AT}\n"  # row 3: fraud's
        f"shared,nobody,dismiss,sam,{AT}\n"  # row 4: no such agent
    )
    out = run(path, "--allow-partial")
    assert "1 row(s) taken, 2 refused, of 3." in out
    assert "row 2: refused: decision id 'shared' is used by more than one agent (fraud, triage); add agentId" in out
    assert "row 4: refused: no decision with id 'shared' of agent 'nobody'" in out
    answered = dict(Decision.objects.filter(entry_id="shared").values_list("agent__agent_id", "response_action"))
    assert answered == {"fraud": "dismiss", "triage": None}
