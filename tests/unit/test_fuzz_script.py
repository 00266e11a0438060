"""scripts/fuzz.py keeps working: a few hundred cases of each target, counted, no crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_fuzzer_runs_a_fixed_number_of_cases_per_target(tmp_path: Path) -> None:
    if os.environ.get("CI"):  # CI installs the extra (scripts/test.sh): never a silent skip
        import atheris  # noqa: F401
    else:
        pytest.importorskip("atheris", reason="the optional fuzz extra (atheris) is missing")
    runs = 200
    cmd = [sys.executable, str(REPO / "scripts" / "fuzz.py"), "--runs", str(runs), "--json"]
    cmd += ["--out", str(tmp_path)]
    for target in ("prepare", "filter", "request"):
        cmd += ["--target", target]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["fuzz_cases_run"] == 3 * runs
    assert summary["fuzz_crashes"] == 0
    for target, row in summary["targets"].items():
        assert row["cases"] == runs, target
        assert row["accepted"] + row["refused"] > 0, target
