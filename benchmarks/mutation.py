"""Mutation testing of the modules that hold the loop's rules (not a test): ``make mutation``.

    .venv/bin/python benchmarks/mutation.py [--only NAME ...] [--jobs 2] [--report-only]

For each module below, mutmut (3.x) mutates that one file, alone, in a private copy of the project under
``var/mutation/<name>/`` (the working tree is never touched, so it is safe while others run tests in it), and runs
the module's own fast test subset against each mutant on the embedded tier (SQLite, no Redis). A module may be
scoped to the functions that hold its rules (``only``) or have its wording left out (``skip``): the other
functions get mutmut's ``# pragma: no mutate block`` in the copy, and are listed in docs/mutation.md.

Prints per module: mutants, killed, survived (every mutant not killed: survived, no tests, suspicious...),
equivalent (the ``mutation-equivalent`` block of docs/mutation.md: a mutant name, the fingerprint of its diff and
why it cannot change behaviour; an entry whose fingerprint no longer matches is reported stale and not applied),
the score = killed / (mutants - equivalent), and the diff of every survivor. Exits 1 when a module scores below
``--min-score`` (default 90 %).
"""

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "mutation"
DOC = ROOT / "docs" / "mutation.md"
VENV_BIN = Path(sys.executable).parent
PRAGMA = "# pragma: no mutate block"
OUT_OF_SCOPE = "# mutation: out of scope"
# What the copy leaves out: environments, caches, data and earlier runs.
IGNORED = shutil.ignore_patterns(
    ".venv", ".git", "var", "mutants", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache", ".pytest_cache"
)
PYTEST_ARGS = ["-x", "-q", "-p", "no:randomly", "-m", "not browser and not configured"]
# The server's tests, per mutant: tables made from the models rather than by 75 migrations, and cheap password
# hashes (the fixture below, loaded as a plugin). Neither changes what the mutated rules do.
SERVER_PYTEST_ARGS = ["--nomigrations", "-p", "benchmarks.mutation"]


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # the file mutated, relative to ``root``
    tests: tuple[str, ...]  # its fast test subset, relative to ``root``
    root: str = "."  # where mutmut runs: the client is its own distribution with its own tests
    only: tuple[str, ...] = ()  # the functions (``f`` or ``Class.f``) mutated; empty: all but ``skip``
    skip: tuple[str, ...] = ()


MODULES = (
    Module(
        "guard",
        "approvals/guard.py",
        (
            "tests/approvals/test_guard.py",
            "tests/approvals/test_guard_boundaries.py",
            "tests/approvals/test_guard_api.py",
            "tests/approvals/test_scoped_approvers.py",
            "tests/approvals/test_required_approvals.py",
        ),
        skip=("agent_lock",),  # a select_for_update only PostgreSQL's concurrency tests can tell from a plain get
    ),
    Module(
        "tuner-rules",
        "tuner/analysis.py",
        ("tests/tuner/test_rules_boundaries.py", "tests/tuner/test_analysis.py"),
        only=(
            "Reference.allowed_rate",
            "miss_rule_checks",
            "risk_reasons",
            "candidate_range",
            "grid_range",
            "confidence_label",
            "miss_rules_problem",
            "impact_score",
            "CycleFacts.dismissal_rate",
            "candidate_problem",
            "in_baseline",
            "rules_apply",
        ),
    ),
    Module(
        "watchdog",
        "approvals/watchdog.py",
        ("tests/approvals/test_watchdog_boundaries.py", "tests/approvals/test_watchdog.py"),
        only=("watchdog_assess", "_sample_weight", "watches_ensure", "_agent_pass", "_restore_target"),
    ),
    Module(
        "input-parser",
        "auditlog/entry.py",
        ("tests/auditlog/test_entry_boundaries.py", "tests/api/test_ingest_internals.py"),
    ),
    Module(
        "input-checks",
        "loopsite/input_checks.py",
        (
            "tests/api/test_input_checks_boundaries.py",
            "tests/auditlog/test_entry_boundaries.py",
            "tests/api/test_bad_input.py",
        ),
    ),
    Module(
        "response-labels",
        "auditlog/labels.py",
        ("tests/auditlog/test_labels_boundaries.py",),
    ),
    Module(
        "response-rules",
        "auditlog/services.py",
        ("tests/auditlog/test_responses_boundaries.py", "tests/api/test_amendments.py"),
        only=("_response_values", "_checked_response", "response_record", "response_amend"),
    ),
    Module(
        "client-retry",
        "src/loopsite_client/_http.py",
        ("tests/test_loopsite_client_boundaries.py", "tests/test_loopsite_client_unit.py"),
        root="clients/python",
        only=("retry_after_seconds", "Response.retry_after", "Backoff.__init__", "Backoff.next", "Backoff.reset"),
    ),
    Module(
        "client-spool",
        "src/loopsite_client/spool.py",
        ("tests/test_loopsite_client_boundaries.py", "tests/test_loopsite_client_unit.py"),
        root="clients/python",
    ),
)


# --- Equivalent mutants, from docs/mutation.md -----------------------------------------------------------


@dataclass(frozen=True)
class Equivalent:
    mutant: str
    fingerprint: str
    reason: str


def equivalents(doc: Path = DOC) -> dict[str, Equivalent]:
    """The ``mutation-equivalent`` block: one ``mutant fingerprint reason...`` a line."""
    text = doc.read_text() if doc.exists() else ""
    block = re.search(r"```mutation-equivalent\n(.*?)```", text, re.S)
    found: dict[str, Equivalent] = {}
    for line in (block.group(1) if block else "").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            mutant, fingerprint, reason = line.split(None, 2)
            found[mutant] = Equivalent(mutant, fingerprint, reason)
    return found


def fingerprint(diff: str) -> str:
    """The changed lines of a mutant's diff, whitespace aside: stable while the mutated line is unchanged."""
    changed = [
        " ".join(line[1:].split())
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:10]


# --- One module --------------------------------------------------------------------------------------------


@dataclass
class Report:
    module: Module
    statuses: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    equivalent: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in ("killed", "timeout"))

    @property
    def survivors(self) -> list[str]:
        return [m for m, s in self.statuses.items() if s not in ("killed", "timeout") and m not in self.equivalent]

    @property
    def score(self) -> float:
        counted = len(self.statuses) - len(self.equivalent)
        return 100.0 * self.killed / counted if counted else 100.0


def qualified_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            out.extend(
                (f"{node.name}.{item.name}", item)
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return out


def in_scope(module: Module, function: str) -> bool:
    return (not module.only or function in module.only) and function not in module.skip


def function_of(mutant: str) -> str:
    """``approvals.guard.x_change_check__mutmut_3`` -> ``change_check``; ``...xǁCycleFactsǁdismissal_rate__mutmut_1``
    -> ``CycleFacts.dismissal_rate``."""
    mangled = mutant.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
    return mangled[2:] if mangled.startswith("x_") else ".".join(mangled.split("ǁ")[1:3])


def scope(source: str, module: Module) -> str:
    """``source`` with mutmut's no-mutate pragma heading the body of every function out of the module's scope."""
    functions = qualified_functions(ast.parse(source))
    names = {name for name, _ in functions}
    missing = sorted(set(module.only + module.skip) - names)
    if missing:
        raise SystemExit(f"{module.path} has no function {', '.join(missing)}: update benchmarks/mutation.py")
    lines = source.splitlines(keepends=True)
    out_of_scope = [
        node for name, node in functions if (module.only and name not in module.only) or name in module.skip
    ]
    for node in sorted(out_of_scope, key=lambda n: -n.body[0].lineno):
        first = node.body[0]
        if first.lineno == node.lineno:  # a one-line def has no body line to head
            continue
        # The signature (defaults, decorators' arguments) is outside the body: its lines are marked for
        # ``do_not_mutate_patterns``.
        header = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        for i in range(header - 1, first.lineno - 1):
            lines[i] = lines[i].rstrip("\n") + f"  {OUT_OF_SCOPE}\n"
        lines.insert(first.lineno - 1, " " * first.col_offset + PRAGMA + "\n")
    return "".join(lines)


# mutmut's own diff of each mutant (what ``mutmut show`` prints), in one process rather than one per mutant.
DIFFS = """
import json, sys
from pathlib import Path
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name, path=Path(sys.argv[1])) for name in sys.argv[2:]}))
"""


def diffs(module: Module, root: Path, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", DIFFS, module.path, *names], cwd=root, env=embedded_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        return {name: f"(no diff: {done.stderr.strip()[-300:]})" for name in names}
    found: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
    return found


def embedded_env() -> dict[str, str]:
    """The embedded tier (SQLite, no Redis), with the test-only settings ``make test`` gives the suite."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "LOOPSITE_REQUIRE_SERVICES")}
    env.update(
        SECRET_KEY=env.get("SECRET_KEY", "tests-only-not-a-secret"),
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def mutmut(args: list[str], cwd: Path, log: Path) -> subprocess.CompletedProcess[str]:
    env = embedded_env()
    with log.open("a") as out:
        out.write(f"\n$ mutmut {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(
            [str(VENV_BIN / "mutmut"), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True
        )
        out.write(done.stdout)
    return done


def setup_cfg(module: Module, root: Path) -> str:
    also_copy = sorted(p.name for p in root.iterdir() if p.name not in ("setup.cfg", "mutants", "pyproject.toml"))
    tests = [t for t in module.tests if (root / t).exists()]

    def listing(values: list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    return (
        "[mutmut]\n"
        f"source_paths = {module.path}\n"
        f"also_copy ={listing(also_copy)}\n"
        f"pytest_add_cli_args ={listing(PYTEST_ARGS + (SERVER_PYTEST_ARGS if module.root == '.' else []))}\n"
        f"pytest_add_cli_args_test_selection ={listing(tests)}\n"
        "use_git_change_detection = false\n"
        f"do_not_mutate_patterns = {OUT_OF_SCOPE}\n"
    )


def run_module(module: Module, *, jobs: int, report_only: bool = False) -> Report:
    report = Report(module)
    started = time.monotonic()
    if not any((ROOT / module.root / t).exists() for t in module.tests):
        report.error = "none of its tests exist"
        return report
    work = WORK / re.sub(r"\W+", "-", module.name)
    root = work / module.root
    log = work / "mutmut.log"
    if not report_only:
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(ROOT, work, ignore=IGNORED, symlinks=True)
        target = root / module.path
        target.write_text(scope(target.read_text(), module))
        (root / "setup.cfg").write_text(setup_cfg(module, root))
        done = mutmut(["run", "--max-children", str(jobs)], root, log)
        if done.returncode != 0:
            report.error = f"mutmut run failed (exit {done.returncode}); see {log.relative_to(ROOT)}"
    results = mutmut(["results", "--all", "true"], root, log)
    for line in results.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name and in_scope(module, function_of(name)):
            report.statuses[name] = status
    known = equivalents()
    report.diffs = diffs(module, root, [n for n, s in report.statuses.items() if s not in ("killed", "timeout")])
    for name in report.diffs:
        entry = known.get(name)
        if entry is not None and entry.fingerprint == fingerprint(report.diffs[name]):
            report.equivalent.append(name)
        elif entry is not None:
            report.stale.append(name)
    report.seconds = time.monotonic() - started
    return report


def print_report(reports: list[Report], seconds: float) -> None:
    print()
    print(f"{'module':<16} {'file':<44} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv.':>6} {'score':>7}")
    for r in reports:
        path = f"{r.module.root}/{r.module.path}" if r.module.root != "." else r.module.path
        print(
            f"{r.module.name:<16} {path:<44} {len(r.statuses):>7} {r.killed:>6} {len(r.survivors):>8} "
            f"{len(r.equivalent):>6} {r.score:>6.1f}%  ({r.seconds:.0f} s)"
        )
    print(f"\nwhole run: {seconds:.0f} s")
    for r in reports:
        if r.error:
            print(f"\n{r.module.name}: {r.error}")
        for name in r.stale:
            print(
                f"\n{r.module.name}: equivalent entry {name} is stale (its diff changed): {fingerprint(r.diffs[name])}"
            )
        for name in r.survivors:
            print(f"\n--- {r.module.name}: {name} ({r.statuses[name]}, fingerprint {fingerprint(r.diffs[name])})")
            print(r.diffs[name].strip())


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="module names (as printed) to run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    parser.add_argument("--report-only", action="store_true", help="report the last run's results, run nothing")
    parser.add_argument("--min-score", type=float, default=90.0)
    args = parser.parse_args()
    modules = [m for m in MODULES if not args.only or m.name in args.only]
    started = time.monotonic()
    reports = []
    for module in modules:
        print(f"mutating {module.path} ({module.name}) ...", flush=True)
        reports.append(run_module(module, jobs=args.jobs, report_only=args.report_only))
    print_report(reports, time.monotonic() - started)
    return 0 if all(r.score >= args.min_score and not r.error for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
