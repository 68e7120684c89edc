"""``simulate``: the closed loop on a synthetic world, with a weekly table at the end and files in --out.

``--scenario drift-study`` runs ``simulation.drift_study`` instead: canary against before/after on changes made while
the world drifts, pure numpy without the database, its table on stdout."""

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from simulation.drift_study import DriftWorld, drift_study, drift_table
from simulation.outputs import table_text, write_outputs
from simulation.own_database import OwnDatabaseRefused, database_argument, database_for
from simulation.runner import AgentIdTaken, simulate
from simulation.world import SCENARIOS, scenario_get

DRIFT = "drift-study"  # not "drift": that is a closed-loop world (simulation/world.py)


class Command(BaseCommand):
    help = "Run the closed loop (agent, reviewers, tuner, approver, watchdog) on a synthetic world."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--scenario",
            choices=[*sorted(SCENARIOS), DRIFT],
            default="miscalibrated",
            help=(
                "the closed loop's world, or drift-study: the canary against before/after on changes made while the "
                "world drifts (no database; only --changes, --per-day, --seed and --no-progress apply to it, the "
                "rest are ignored)"
            ),
        )
        parser.add_argument(
            "--changes", type=int, default=200, help="drift-study only: simulated changes, half good, half bad"
        )
        parser.add_argument("--weeks", type=int, default=8)
        parser.add_argument("--per-day", type=int, default=2000, help="decisions a simulated day")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--label-noise", type=float, default=0.03, help="share of reviewers' answers on alerts that are slips"
        )
        parser.add_argument("--out", type=Path, default=None, help="folder for weekly.csv, weekly.json, curves.png")
        parser.add_argument(
            "--start",
            type=date.fromisoformat,
            default=None,
            help="first Monday (default: the Monday --weeks weeks before this week's)",
        )
        parser.add_argument(
            "--agent-id",
            default=None,
            help="default sim-<scenario>-<seed> (-2, -3... when taken); a named id that exists is refused",
        )
        database_argument(parser)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["scenario"] == DRIFT:
            self._drift(opts)
            return
        if opts["weeks"] < 1 or opts["per_day"] < 1:
            raise CommandError("--weeks and --per-day must be positive")
        if not 0 <= opts["label_noise"] < 0.5:
            raise CommandError("--label-noise must be at least 0 and under 0.5")
        scenario = scenario_get(opts["scenario"], label_noise=opts["label_noise"])
        days = opts["weeks"] * 7
        bar = tqdm(total=days, unit="day", desc=scenario.name, disable=opts["no_progress"], file=self.stderr)
        try:
            with database_for(opts["database"], out=self.stdout.write, err=self.stderr.write):
                result = simulate(
                    scenario=scenario,
                    weeks=opts["weeks"],
                    per_day=opts["per_day"],
                    seed=opts["seed"],
                    start=opts["start"],
                    agent_id=opts["agent_id"],
                    progress=lambda _day: bar.update(1),
                )
        except (AgentIdTaken, OwnDatabaseRefused) as exc:
            raise CommandError(str(exc)) from None
        bar.close()
        rows = result.table()
        self.stdout.write(f"{scenario.name}: {scenario.description}")
        self.stdout.write(f"agent {result.agent_id}, seed {result.seed}, {result.per_day}/day from {result.start}")
        self.stdout.write(table_text(rows))
        if opts["out"] is not None:
            meta = {
                "title": f"{scenario.name}, seed {result.seed}, {result.per_day}/day",
                "scenario": scenario.name,
                "seed": result.seed,
                "perDay": result.per_day,
                "agentId": result.agent_id,
                "start": result.start.isoformat(),
            }
            for path in write_outputs(out=opts["out"], meta=meta, rows=rows, events=result.events):
                self.stdout.write(f"wrote {path}")

    def _drift(self, opts: dict[str, Any]) -> None:
        """The drift study: no agent, no database, nothing written but the table."""
        if opts["changes"] < 2:
            raise CommandError("--changes must be at least 2: one good change and one bad")
        if opts["per_day"] < 1:
            raise CommandError("--per-day must be positive")
        bar = tqdm(total=opts["changes"], unit="change", desc=DRIFT, disable=opts["no_progress"], file=self.stderr)
        result = drift_study(
            changes=opts["changes"],
            seed=opts["seed"],
            drift=DriftWorld.from_rules(per_day=opts["per_day"]),
            progress=lambda _n: bar.update(1),
        )
        bar.close()
        self.stdout.write(drift_table(result))
