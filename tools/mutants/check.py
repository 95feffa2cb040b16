"""The verdict of `make mutants`: cargo-mutants' results against the explained survivors.

Reads the run's outcomes (mutants.out/outcomes.json, written by cargo-mutants) and
prints how many mutants were caught, missed, unviable and timed out, with the time
taken. Every missed or timed-out mutant (a survivor) must have an entry in
tools/mutants/explained.txt, a line

    <the mutant's name, as cargo-mutants prints it> # <why it cannot matter>

and this exits 1 if one has none (or if cargo-mutants itself failed: the baseline tests
fail, the diff does not match the tree, ...). It warns about entries that match no
mutant in scope any more, and about entries whose mutant is now caught.

A name is `file:line:column: description`. An entry whose line moved still matches its
mutant when the name without the line and column is unique in the scope (the warning
gives the new name); an ambiguous one must be updated.

    python tools/mutants/check.py --exit-code N [--seconds S] [--out mutants.out]
        [--explained tools/mutants/explained.txt] [--scope OUT/scope.json]

--scope is `cargo mutants --list --json` of the whole scope (the Makefile writes it),
so that a run of one file, one shard or one diff does not call every other entry stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINE_COL = re.compile(r"^(?P<file>[^:]+):\d+:\d+: ")
SURVIVED = ("MissedMutant", "Timeout")
LABELS = {
    "CaughtMutant": "caught",
    "MissedMutant": "missed",
    "Unviable": "unviable",
    "Timeout": "timed out",
    "Success": "succeeded",
    "Failure": "failed",
}
# cargo-mutants' exit codes (mutants.rs, "Exit codes"). 0, 2 and 3 are a finished run:
# this script decides from its survivors; anything else means no verdict.
EXIT_MEANINGS = {
    1: "usage error (bad arguments or configuration)",
    4: "the tests fail (or hang) without any mutation: fix them first (mutants.out/log/baseline.log)",
    5: "the --in-diff diff does not match this tree",
    6: "the --in-diff diff cannot be parsed",
    70: "internal error of cargo-mutants",
}


def short(name: str) -> str:
    """The name without its line and column: `file: description`."""
    return LINE_COL.sub(r"\g<file>: ", name, count=1)


@dataclass
class Entry:
    name: str
    reason: str
    line: int


def read_explained(path: Path) -> tuple[list[Entry], list[str]]:
    """The entries, and what is wrong with the file (a line with no reason, a repeat)."""
    entries, problems, seen = [], [], set()
    if not path.exists():
        return entries, problems
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, reason = line.partition(" # ")
        name, reason = name.strip(), reason.strip()
        if not sep or not reason or not LINE_COL.match(name):
            problems.append(f"{path.name}:{number}: not `<file:line:col: mutant> # <reason>`: {raw}")
            continue
        if name in seen:
            problems.append(f"{path.name}:{number}: listed twice: {name}")
            continue
        seen.add(name)
        entries.append(Entry(name, reason, number))
    return entries, problems


class Matcher:
    """Finds the entry of a mutant: by its exact name, or (if the line moved) by its
    name without line and column, when that is unique in the scope."""

    def __init__(self, entries: list[Entry], scope: list[str]):
        self.exact = {e.name: e for e in entries}
        counts = Counter(short(n) for n in scope)
        self.by_short: dict[str, Entry] = {}
        for e in entries:
            if counts.get(short(e.name), 0) == 1 and e.name not in scope:
                self.by_short[short(e.name)] = e

    def find(self, name: str) -> Entry | None:
        return self.exact.get(name) or self.by_short.get(short(name))


def mutant_outcomes(outcomes: dict) -> list[tuple[str, str]]:
    """(name, summary) of each mutant of the run, in the order they ran."""
    found = []
    for outcome in outcomes.get("outcomes", []):
        scenario = outcome.get("scenario")
        if isinstance(scenario, dict) and "Mutant" in scenario:
            found.append((scenario["Mutant"]["name"], outcome.get("summary", "")))
    return found


def phase_seconds(outcomes: dict) -> tuple[float, float, float]:
    """Seconds spent on the baseline, on building the mutants and on testing them."""
    baseline = build = test = 0.0
    for outcome in outcomes.get("outcomes", []):
        for phase in outcome.get("phase_results", []):
            seconds = float(phase.get("duration", 0.0))
            if outcome.get("scenario") == "Baseline":
                baseline += seconds
            elif phase.get("phase") in ("Build", "Check"):
                build += seconds
            else:
                test += seconds
    return baseline, build, test


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "mutants.out")
    parser.add_argument("--explained", type=Path, default=REPO / "tools/mutants/explained.txt")
    parser.add_argument(
        "--scope", type=Path, help="`cargo mutants --list --json` of the whole scope (default: OUT/scope.json)"
    )
    parser.add_argument("--exit-code", type=int, default=None, help="cargo-mutants' exit code")
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the run")
    args = parser.parse_args(argv)

    failed = False
    if args.exit_code not in (None, 0, 2, 3):
        meaning = EXIT_MEANINGS.get(args.exit_code, "unknown exit code")
        print(f"mutants: cargo-mutants exited {args.exit_code}: {meaning}")
        failed = True

    if args.scope is None:
        args.scope = args.out / "scope.json"
    outcomes_path = args.out / "outcomes.json"
    if not outcomes_path.exists():
        if args.exit_code == 0:
            # --in-diff with nothing to mutate: cargo-mutants says so and writes nothing.
            print("mutants: no mutant to test (the diff touches no mutated code)")
            return 1 if failed else 0
        print(f"mutants: no {outcomes_path}: cargo-mutants did not run to the end")
        return 1
    outcomes = json.loads(outcomes_path.read_text())
    run = mutant_outcomes(outcomes)
    counts = Counter(summary for _, summary in run)

    scope = [m["name"] for m in json.loads(args.scope.read_text())] if args.scope.exists() else []
    if not scope:
        scope = [name for name, _ in run]
    entries, problems = read_explained(args.explained)
    matcher = Matcher(entries, scope)

    baseline, build, test = phase_seconds(outcomes)
    wall = f"{clock(args.seconds)} in all" if args.seconds is not None else "time unknown"
    print(
        f"mutants: {len(run)} tested ({wall}; baseline {clock(baseline)}, "
        f"mutants' builds {clock(build)}, tests {clock(test)})"
    )
    parts = [f"{counts.get(k, 0)} {LABELS[k]}" for k in ("CaughtMutant", "MissedMutant", "Unviable", "Timeout")]
    parts += [f"{counts[k]} {LABELS.get(k, k)}" for k in counts if k not in ("CaughtMutant", "MissedMutant", "Unviable", "Timeout")]
    print("mutants: " + ", ".join(parts))
    if run:
        print(f"mutants: {(build + test) / len(run):.0f} s per mutant on average (build and test)")

    explained, unexplained, used = [], [], set()
    for name, summary in run:
        if summary not in SURVIVED:
            continue
        entry = matcher.find(name)
        if entry is None:
            unexplained.append((name, summary))
            continue
        used.add(entry.name)
        explained.append((name, summary, entry))
    if explained:
        print(f"mutants: {len(explained)} survivor(s) explained in {args.explained.name}:")
        for name, summary, entry in explained:
            print(f"  {LABELS[summary]:<9} {name} # {entry.reason}")
            if entry.name != name:
                print(f"  warning: {args.explained.name}:{entry.line} names it {entry.name}; update the line and column")
    if unexplained:
        failed = True
        print(
            f"mutants: {len(unexplained)} survivor(s) with no entry: add a test that kills each, "
            f"or a line `<name> # <why it cannot matter>` to {args.explained.relative_to(REPO) if args.explained.is_relative_to(REPO) else args.explained}:"
        )
        for name, summary in unexplained:
            print(f"  {LABELS[summary]:<9} {name}")

    # Entries that no longer matter: no such mutant any more, or one this run caught.
    caught = {name for name, summary in run if summary == "CaughtMutant"}
    scope_set = set(scope)
    for e in entries:
        if e.name in used:
            continue
        live = e.name in scope_set or short(e.name) in matcher.by_short
        if not live:
            print(f"mutants: warning: {args.explained.name}:{e.line} matches no mutant in scope: {e.name}")
        elif any(matcher.find(name) is e for name in caught):
            print(f"mutants: warning: {args.explained.name}:{e.line} is caught now; remove it: {e.name}")
    for problem in problems:
        failed = True
        print(f"mutants: {problem}")

    print("mutants: FAILED" if failed else "mutants: ok, every survivor is explained")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
