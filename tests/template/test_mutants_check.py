"""tools/mutants/check.py: the verdict of `make mutants`.

GIVEN a mutants.out as cargo-mutants 27.1.0 writes it (outcomes.json) and an
      explained.txt
WHEN the check reads them
THEN it counts caught, missed, unviable and timed out; passes only when every missed or
     timed-out mutant has an entry; fails when cargo-mutants could not judge (baseline
     failed, diff mismatch) or a line of explained.txt has no reason; matches an entry
     whose line moved when the name is otherwise unique, not when it is ambiguous; warns
     about entries whose mutant is gone or now caught; and treats an --in-diff run with
     nothing to mutate (exit 0, no outcomes) as a pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "mutants"))

import check  # noqa: E402

SCRUB = "crates/rotation/src/secret/scrub.rs"
STS = "crates/rotation/src/sts.rs"


def mutant(name: str, summary: str, build: float = 10.0, test: float = 20.0) -> dict:
    phases = [{"phase": "Build", "duration": build, "process_status": "Success", "argv": []}]
    if summary != "Unviable":
        phases.append({"phase": "Test", "duration": test, "process_status": "Success", "argv": []})
    return {
        "scenario": {"Mutant": {"name": name, "package": "rotation", "file": name.split(":")[0]}},
        "summary": summary,
        "log_path": "log/x.log",
        "diff_path": "diff/x.diff",
        "phase_results": phases,
    }


def outcomes(*mutants: dict) -> dict:
    baseline = {
        "scenario": "Baseline",
        "summary": "Success",
        "phase_results": [
            {"phase": "Build", "duration": 300.0, "process_status": "Success", "argv": []},
            {"phase": "Test", "duration": 60.0, "process_status": "Success", "argv": []},
        ],
    }
    return {"outcomes": [baseline, *mutants], "total_mutants": len(mutants)}


class CheckTest(unittest.TestCase):
    def run_check(self, run: dict | None, explained: str, scope: list[str], exit_code: int) -> tuple[int, str]:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            out = root / "mutants.out"
            out.mkdir()
            if run is not None:
                (out / "outcomes.json").write_text(json.dumps(run))
            (out / "scope.json").write_text(json.dumps([{"name": n} for n in scope]))
            (root / "explained.txt").write_text(explained)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = check.main([
                    # The scope: mutants.out/scope.json, as the Makefile writes it.
                    "--out", str(out), "--explained", str(root / "explained.txt"),
                    "--exit-code", str(exit_code), "--seconds", "3725",
                ])
            return code, printed.getvalue()

    def test_counts_and_time(self) -> None:
        names = [f"{STS}:36:5: replace is_user_arn -> bool with true", f"{STS}:36:5: replace is_user_arn -> bool with false",
                 f"{STS}:15:5: replace caller_arn_with_key -> Result<String, AwsError> with Ok(String::new())"]
        run = outcomes(mutant(names[0], "CaughtMutant"), mutant(names[1], "CaughtMutant"), mutant(names[2], "Unviable"))
        code, printed = self.run_check(run, "", names, 0)
        self.assertEqual(code, 0, printed)
        self.assertIn("3 tested (1:02:05 in all; baseline 0:06:00, mutants' builds 0:00:30, tests 0:00:40)", printed)
        self.assertIn("2 caught, 0 missed, 1 unviable, 0 timed out", printed)

    def test_an_unexplained_survivor_fails_and_is_named(self) -> None:
        missed = f"{SCRUB}:108:5: replace hex -> Option<u32> with None"
        hang = f"{SCRUB}:140:17: replace += with *= in json_unescape"
        code, printed = self.run_check(outcomes(mutant(missed, "MissedMutant"), mutant(hang, "Timeout")), "", [missed, hang], 3)
        self.assertEqual(code, 1)
        self.assertIn(f"missed    {missed}", printed)
        self.assertIn(f"timed out {hang}", printed)
        self.assertIn("2 survivor(s) with no entry", printed)

    def test_explained_survivors_pass(self) -> None:
        missed = f"{SCRUB}:108:5: replace hex -> Option<u32> with None"
        code, printed = self.run_check(
            outcomes(mutant(missed, "MissedMutant")), f"# comment\n\n{missed} # the caller checks the length first\n", [missed], 2
        )
        self.assertEqual(code, 0, printed)
        self.assertIn("every survivor is explained", printed)

    def test_a_moved_line_matches_when_the_name_is_unique(self) -> None:
        old = f"{SCRUB}:108:5: replace hex -> Option<u32> with None"
        new = f"{SCRUB}:110:5: replace hex -> Option<u32> with None"
        code, printed = self.run_check(outcomes(mutant(new, "MissedMutant")), f"{old} # why\n", [new], 2)
        self.assertEqual(code, 0, printed)
        self.assertIn("update the line and column", printed)

    def test_a_moved_line_does_not_match_an_ambiguous_name(self) -> None:
        old = f"{STS}:37:76: replace == with != in is_user_arn"
        scope = [f"{STS}:37:80: replace == with != in is_user_arn", f"{STS}:38:10: replace == with != in is_user_arn"]
        code, printed = self.run_check(outcomes(mutant(scope[0], "MissedMutant")), f"{old} # why\n", scope, 2)
        self.assertEqual(code, 1, printed)
        self.assertIn("matches no mutant in scope", printed)

    def test_stale_and_caught_entries_are_warned_about(self) -> None:
        caught = f"{STS}:36:5: replace is_user_arn -> bool with true"
        gone = f"{STS}:99:1: replace gone -> bool with true"
        code, printed = self.run_check(outcomes(mutant(caught, "CaughtMutant")), f"{caught} # why\n{gone} # why\n", [caught], 0)
        self.assertEqual(code, 0, printed)
        self.assertIn(f"is caught now; remove it: {caught}", printed)
        self.assertIn(f"matches no mutant in scope: {gone}", printed)

    def test_an_entry_without_a_reason_fails(self) -> None:
        name = f"{STS}:36:5: replace is_user_arn -> bool with true"
        code, printed = self.run_check(outcomes(mutant(name, "CaughtMutant")), f"{name}\n", [name], 0)
        self.assertEqual(code, 1)
        self.assertIn("not `<file:line:col: mutant> # <reason>`", printed)

    def test_cargo_mutants_failures_fail(self) -> None:
        code, printed = self.run_check(outcomes(), "", [], 4)
        self.assertEqual(code, 1)
        self.assertIn("the tests fail (or hang) without any mutation", printed)
        code, printed = self.run_check(None, "", [], 5)
        self.assertEqual(code, 1)
        self.assertIn("does not match this tree", printed)

    def test_nothing_to_mutate_in_the_diff_passes(self) -> None:
        code, printed = self.run_check(None, "", [], 0)
        self.assertEqual(code, 0, printed)
        self.assertIn("no mutant to test", printed)


if __name__ == "__main__":
    unittest.main()
