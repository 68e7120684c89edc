"""The weekly table of a run, printed and written to --out as CSV, JSON and a PNG chart."""

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    ("week", "wk", "{}"),
    ("decisions", "decisions", "{}"),
    ("responseRate", "resp", "pct"),
    ("dismissalRate", "dismiss", "pct"),
    ("escalationRate", "escal", "pct"),
    ("trueFalseAlarmRate", "true FA", "pct"),
    ("trueMissRate", "true miss", "pct"),
    ("initialMissRate", "untuned miss", "pct"),
    ("proposals", "prop", "{}"),
    ("accepted", "acc", "{}"),
    ("rollbacks", "rb", "{}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "pct":
        return f"{100 * float(value):.1f}%"
    return fmt.format(value)


def table_text(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table, one line a week, the threshold values last."""
    names = sorted({name for row in rows for name in row.get("thresholds", {})})
    header = [label for _, label, _ in COLUMNS] + names
    lines = [
        [_cell(row.get(key), fmt) for key, _, fmt in COLUMNS] + [f"{row['thresholds'].get(n, 0):.3f}" for n in names]
        for row in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k != "thresholds"}
    flat.update({f"threshold:{k}": v for k, v in row.get("thresholds", {}).items()})
    return flat


def write_outputs(*, out: Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]], events: list[Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    flat = [flat_row(r) for r in rows]
    csv_path = out / "weekly.csv"
    with csv_path.open("w", newline="") as handle:
        fields = list(dict.fromkeys(k for r in flat for k in r))
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    json_path = out / "weekly.json"
    json_path.write_text(json.dumps({**meta, "weeks": list(rows), "events": events}, indent=2, default=str) + "\n")
    png_path = out / "curves.png"
    chart_write(png_path, rows=rows, title=str(meta.get("title", "")))
    return [csv_path, json_path, png_path]


def chart_write(path: Path, *, rows: Sequence[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [r["week"] for r in rows]

    def series(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else 100 * float(r[key]) for r in rows]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, height_ratios=[3, 2])
    for key, label, style in (
        ("dismissalRate", "dismissal rate", "-o"),
        ("escalationRate", "escalation rate", "-s"),
        ("trueFalseAlarmRate", "true false-alarm rate", "--"),
        ("trueMissRate", "true miss rate", ":"),
        ("responseRate", "response rate", "-."),
    ):
        top.plot(weeks, series(key), style, label=label)
    top.axhline(15, color="grey", linewidth=0.8, linestyle="--")
    top.text(weeks[0] if weeks else 1, 15.5, "15 % healthy", color="grey", fontsize=8)
    top.set_ylabel("%")
    top.set_ylim(bottom=0)
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title)
    names = sorted({n for r in rows for n in r.get("thresholds", {})})
    for name in names:
        bottom.step(weeks, [r["thresholds"].get(name) for r in rows], where="post", label=name)
    for r in rows:
        if r.get("rollbacks"):
            bottom.axvline(r["week"], color="red", alpha=0.4)
        if r.get("accepted"):
            bottom.axvline(r["week"], color="green", alpha=0.2)
    bottom.set_ylabel("threshold (end of week)")
    bottom.set_xlabel("week (green: changes accepted, red: rollbacks)")
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
