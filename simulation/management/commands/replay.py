"""``replay``: the closed loop over a labelled CSV (a team's own history), with the simulation's outputs."""

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from simulation.outputs import table_text, write_outputs
from simulation.own_database import OwnDatabaseRefused, database_argument, database_for
from simulation.replay import ReplayError, ReplaySpec, load_table, prepare, replay_run, resolve_csv
from simulation.runner import AgentIdTaken


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


class Command(BaseCommand):
    help = "Replay the loop over a labelled CSV: time and label columns, a score column or a simple model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", required=True, help="a .csv or .csv.gz; relative paths also under the data dir")
        parser.add_argument("--label-col", required=True, help="the reviewers' truth")
        parser.add_argument("--positive", default="1,yes,true,spam,fraud", help="label values that are positive")
        parser.add_argument("--time-col", default=None, help="without it: rows in file order, --batch-rows a week")
        parser.add_argument("--time-unit", default="auto", choices=["auto", "datetime", "seconds", "index"])
        parser.add_argument("--period-hours", type=float, default=168.0, help="hours of data per simulated week")
        parser.add_argument("--batch-rows", type=int, default=500, help="rows per simulated week without a time")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--score-col", default=None, help="the agent's confidence, 0..1")
        source.add_argument("--feature-cols", type=_names, default=(), help="comma-separated; a model is trained")
        source.add_argument("--text-col", default=None, help="a text column: simple text features, a model")
        parser.add_argument("--train-periods", type=int, default=2, help="periods that train the model (not replayed)")
        parser.add_argument(
            "--class-weight", choices=["balanced"], default=None, help="balanced: the model weighs the rare class up"
        )
        parser.add_argument("--threshold", type=float, required=True, help="the initial flag threshold")
        parser.add_argument("--weeks", type=int, default=None, help="replay at most this many periods")
        parser.add_argument("--response-rate", type=float, default=0.9)
        parser.add_argument("--sample-rate", type=float, default=0.10)
        parser.add_argument("--objective", choices=["tolerance", "cost"], default="tolerance", help="the tuner's")
        parser.add_argument("--miss-cost", type=float, default=5.0, help="with --objective cost: false alarms a miss")
        parser.add_argument(
            "--label-noise", type=float, default=0.03, help="share of reviewers' answers on alerts that are slips"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--start", type=date.fromisoformat, default=None)
        parser.add_argument("--agent-id", default=None)
        parser.add_argument("--out", type=Path, default=None)
        database_argument(parser)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            spec = ReplaySpec(
                csv=resolve_csv(opts["csv"]),
                label_col=opts["label_col"],
                threshold=opts["threshold"],
                time_col=opts["time_col"],
                time_unit=opts["time_unit"],
                period_hours=opts["period_hours"],
                batch_rows=opts["batch_rows"],
                positive=_names(opts["positive"]),
                score_col=opts["score_col"],
                feature_cols=opts["feature_cols"],
                text_col=opts["text_col"],
                train_periods=opts["train_periods"],
                class_weight=opts["class_weight"],
                weeks=opts["weeks"],
                response_rate=opts["response_rate"],
                sample_rate=opts["sample_rate"],
                label_noise=opts["label_noise"],
                objective=opts["objective"],
                miss_cost=opts["miss_cost"],
                seed=opts["seed"],
            )
            if opts["text_col"]:
                spec = ReplaySpec(**{**spec.__dict__, "feature_cols": ()})
            days = prepare(spec, load_table(spec)).days
        except ReplayError as exc:
            raise CommandError(str(exc)) from None
        if not 0 <= spec.label_noise < 0.5:
            raise CommandError("--label-noise must be at least 0 and under 0.5")
        bar = tqdm(total=days, unit="day", desc="replay", disable=opts["no_progress"], file=self.stderr)
        try:
            with database_for(opts["database"], out=self.stdout.write, err=self.stderr.write):
                result = replay_run(
                    spec, start=opts["start"], agent_id=opts["agent_id"], progress=lambda _d: bar.update(1)
                )
        except (AgentIdTaken, OwnDatabaseRefused) as exc:
            raise CommandError(str(exc)) from None
        bar.close()
        rows = result.table()
        self.stdout.write(f"replay of {spec.csv.name}: agent {result.agent_id}, about {result.per_day} decisions a day")
        self.stdout.write(table_text(rows))
        if opts["out"] is not None:
            meta = {
                "title": f"replay of {spec.csv.name}",
                "csv": spec.csv.name,
                "seed": spec.seed,
                "agentId": result.agent_id,
                "start": result.start.isoformat(),
                "initialThreshold": spec.threshold,
            }
            for path in write_outputs(out=opts["out"], meta=meta, rows=rows, events=result.events):
                self.stdout.write(f"wrote {path}")
