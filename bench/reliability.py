"""Reliability and security figures of issue 7 in one run: faults, load, hostile input.

    .venv/bin/python bench/reliability.py                          # everything (~20-40 min)
    .venv/bin/python bench/reliability.py --fuzz-runs 2000 --skip cluster   # API + fuzzing only
    .venv/bin/python bench/reliability.py --api-args "--duration 5 --phase-duration 8"

Three parts, each its own program, whose figures are gathered here:

* **cluster faults** (``bench/reliability_cluster.py``, ``measure()``): 3-node clusters, a node
  SIGKILLed during ingest and migration, small write queues: documents lost, duplicated, and the
  per-item retries that recovered them;
* **the HTTP API under load** (``bench/api_load.py``, in a subprocess): p95 of the 200s at 16
  closed-loop clients, and the degradation checks (slow engine, slow reranker);
* **fuzzing** (``scripts/fuzz.py``, atheris): ``--fuzz-runs`` cases for each of its four
  targets; crashes counted.

Prints a table and ends with one line ``RESULT {json}`` holding ``documents_lost``,
``documents_duplicated``, ``retries``, ``api_p95_ms_under_load``, ``fuzz_cases_run`` (``null``
for a part that was skipped or is missing, named in ``missing``) plus the parts' details.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import log

BENCH = Path(__file__).resolve().parent
FUZZ = common.REPO / "scripts" / "fuzz.py"


def _result_line(stdout: str) -> tuple[dict[str, Any] | None, str]:
    """The ``RESULT {json}`` of a benchmark's output, and the rest of its output."""
    result = None
    rest = []
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
        else:
            rest.append(line)
    return result, "\n".join(rest)


def _total(value: Any, key: str) -> Any:
    """``value[key]``, or its sum over per-engine (or per-scenario) sub-dicts."""
    if not isinstance(value, Mapping):
        return None
    if key in value and not isinstance(value[key], Mapping):
        return value[key]
    parts = [_total(v, key) for v in value.values() if isinstance(v, Mapping)]
    numbers = [p for p in parts if isinstance(p, int | float)]
    return sum(numbers) if numbers else None


def run_cluster(engine: str | None) -> tuple[dict[str, Any] | None, str | None]:
    try:
        from reliability_cluster import measure  # type: ignore[import-not-found]
    except ImportError as exc:
        return None, f"bench/reliability_cluster.py (measure): {exc}"
    wanted: dict[str, Any] = {}
    params = inspect.signature(measure).parameters
    if engine is not None and "engine" in params:
        wanted["engine"] = engine
    log("cluster faults: reliability_cluster.measure()")
    started = time.perf_counter()
    out = measure(**wanted)
    log(f"cluster faults done in {time.perf_counter() - started:.0f} s")
    return dict(out), None


def run_api(engine: str, extra: Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
    cmd = [sys.executable, str(BENCH / "api_load.py"), "--engine", engine, *extra]
    log(f"API load: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stderr.write(proc.stderr[-4000:])
    result, rest = _result_line(proc.stdout)
    if result is None:
        return None, f"bench/api_load.py failed ({proc.returncode}): {proc.stderr[-500:]}"
    print(rest.strip())
    return result, None


def run_fuzz(runs: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return None, "atheris (pip install -e '.[fuzz]'): fuzzing not run"
    cmd = [sys.executable, str(FUZZ), "--runs", str(runs), "--json"]
    log(f"fuzzing: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return None, f"scripts/fuzz.py failed ({proc.returncode}): {proc.stderr[-500:]}"
    return json.loads(lines[-1]), None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engine", default="elasticsearch", choices=["elasticsearch", "opensearch"])
    p.add_argument("--fuzz-runs", type=int, default=10_000, help="cases per fuzz target")
    p.add_argument("--api-args", default="", help="extra arguments for bench/api_load.py")
    p.add_argument("--skip", action="append", default=[], choices=["cluster", "api", "fuzz"])
    p.add_argument(
        "--cluster-engine",
        default=None,
        help="passed to measure(engine=...) when it takes one (default: its own choice)",
    )
    args = p.parse_args(argv)

    missing: list[str] = []
    cluster = api = fuzz = None
    if "cluster" not in args.skip:
        cluster, why = run_cluster(args.cluster_engine)
        if why:
            missing.append(why)
    if "api" not in args.skip:
        api, why = run_api(args.engine, shlex.split(args.api_args))
        if why:
            missing.append(why)
    if "fuzz" not in args.skip:
        fuzz, why = run_fuzz(args.fuzz_runs)
        if why:
            missing.append(why)
    missing += [f"{part}: skipped (--skip)" for part in args.skip]

    figures = {
        "documents_lost": _total(cluster, "documents_lost"),
        "documents_duplicated": _total(cluster, "documents_duplicated"),
        "retries": _total(cluster, "retries"),
        "api_p95_ms_under_load": api.get("api_p95_ms_under_load") if api else None,
        "fuzz_cases_run": fuzz.get("fuzz_cases_run") if fuzz else None,
    }
    degradation = (api or {}).get("checks") or {}
    rows = [
        ["documents lost (node killed during ingest and migration)", figures["documents_lost"]],
        ["documents duplicated", figures["documents_duplicated"]],
        ["per-item retries that recovered documents", figures["retries"]],
        ["API p95 ms, 200s at 16 clients (hybrid, 1k docs)", figures["api_p95_ms_under_load"]],
        [
            "API: latency bounded by the timeout when degraded",
            degradation.get("latency_bounded_by_timeout"),
        ],
        ["API: Retry-After on every 503/504", degradation.get("retry_after_on_every_503_504")],
        ["fuzz cases run (4 targets)", figures["fuzz_cases_run"]],
        ["fuzz crashes", fuzz.get("fuzz_crashes") if fuzz else None],
    ]
    print("\nreliability and security (issue 7)")

    def shown(value: Any) -> Any:
        if value is None:
            return "-"
        if isinstance(value, Mapping):  # per-phase checks
            passed = [name for name, ok in value.items() if ok]
            return f"{len(passed)}/{len(value)} phases ({', '.join(value)})"
        return value

    print(common.table(["figure", "value"], [[k, shown(v)] for k, v in rows]))
    for why in missing:
        print(f"  missing: {why}")
    result = {
        **figures,
        "fuzz_crashes": fuzz.get("fuzz_crashes") if fuzz else None,
        "missing": missing,
        "cluster": cluster,
        "api": {k: (api or {}).get(k) for k in ("engine", "index", "levels", "checks")},
        "api_degradation": ((api or {}).get("degradation") or {}).get("phases"),
        "fuzz": {k: v for k, v in (fuzz or {}).items() if k != "results"},
    }
    path = common.write_json("reliability.json", result)
    log(f"wrote {path}")
    common.print_result(result)
    return result


if __name__ == "__main__":
    main()
