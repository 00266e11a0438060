"""Coverage-guided fuzzing (atheris / libFuzzer) of what es-neural takes from the outside.

    pip install -e '.[test,fuzz]'                 # atheris (Linux x86-64 wheels)
    .venv/bin/python scripts/fuzz.py --runs 20000                 # every target, 20k cases each
    .venv/bin/python scripts/fuzz.py --target filter --runs 100000 --stop-on-crash
    .venv/bin/python scripts/fuzz.py --runs 5000 --json           # one JSON summary line
    .venv/bin/python scripts/fuzz.py --target api --reproduce bench/out/fuzz/crashes/api/<sha1>

Targets (each input is either accepted or refused with a typed reason; anything else is a crash):

* ``prepare``: a JSONL file of the input bytes through ``jsonl_source`` and ``prepare_record``
  (every line a record or a read error; every record prepared or rejected with a reason, its
  dead letter writable); or a Python value built from the bytes (odd types, cycles, lone
  surrogates, huge integers, deep nesting, long strings) straight into ``prepare_record``.
* ``filter``: the portable filter format (``compile_filter``): ``InvalidInputError`` or a clause
  inside the engine grammar of ``tests/support/grammar.py`` on both dialects.
* ``request``: ``ApiSearchRequest.model_validate_json`` (pydantic ``ValidationError`` or a
  request) and, when accepted, the engine bodies of both dialects (``leg_bodies``) checked
  against the same grammar.
* ``api``: the bytes as the body of ``POST /v1/search`` on the real app (FastAPI TestClient,
  the engine a closed loopback port): a 4xx JSON error, or 503 with ``Retry-After``; never a
  500 or a traceback.

Each input's first byte picks how the rest is read: as JSON text (mutations of the seed corpus
below explore near-valid inputs), or as a recipe for a structured value. Each target runs in its
own process (libFuzzer ends the process when done); crashes are counted, deduplicated by
exception type and location, and their inputs written under ``--out`` (default
``bench/out/fuzz``). Without atheris the script says so and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("prepare", "filter", "request", "api")
DEFAULT_OUT = REPO / "bench" / "out" / "fuzz"

# ----------------------------------------------------------------------------- seeds

SEEDS: dict[str, list[Any]] = {
    "prepare": [
        {"id": "d1", "title": "Neural search", "text": "Dense and sparse retrieval.", "year": 2024},
        {"id": 7, "text": "x", "tags": ["a", "b"], "meta": {"lang": "en", "score": 0.5}},
        {"text": "no id", "nested": [[1, 2], {"k": None}]},
        {"_id": "with-underscore-id", "text": "t", "embedding": [0.1]},
    ],
    "filter": [
        {"term": {"field": "tenant", "value": "acme"}},
        {"terms": {"field": "tag", "values": ["a", 2, True]}},
        {"range": {"field": "year", "gte": 2000, "lt": 2010.5}},
        {"exists": {"field": "title"}},
        {
            "bool": {
                "must": [{"term": {"field": "a", "value": 1}}],
                "should": [{"exists": {"field": "b"}}],
                "must_not": [{"range": {"field": "c", "gt": "x"}}],
            }
        },
    ],
    "request": [
        {"index": "docs", "query": "neural search"},
        {
            "index": "docs",
            "query": "q",
            "size": 5,
            "filter": {"term": {"field": "tenant", "value": "acme"}},
            "bm25": {"fields": ["title^2", "text"], "k": 50},
            "dense": {"num_candidates": 100},
            "sparse": {"max_terms": 32},
            "fusion": {"method": "linear", "normalization": "zscore"},
            "rerank": {"enabled": False},
            "tree": {"enabled": False, "boost": 0.5},
            "source": ["title"],
            "explain": True,
            "engine": "opensearch",
        },
    ],
}
SEEDS["api"] = SEEDS["request"]

# ----------------------------------------------------------------------------- structured values

_KEYS = [
    "id", "_id", "text", "title", "field", "value", "values", "term", "terms", "range", "exists",
    "bool", "must", "should", "filter", "must_not", "gte", "lt", "script", "query", "index",
    "size", "window", "cursor", "bm25", "dense", "sparse", "fields", "k", "weight", "enabled",
    "source", "tree", "fusion", "rerank", "engine", "embedding", "splade", "content_hash",
]  # fmt: skip
_NASTY = [
    "", " ", "\x00", "\ud800", "\u202e", "\ufeff", "title\n", "a,b", "*", "_source", "a.b",
    '{"script": {"source": "1"}}', "../../etc/passwd", "%2E", "title^2", "ñ🦆", "docs",
]  # fmt: skip


class _Opaque:
    """A value of no JSON type at all."""


def _build(fdp: Any, depth: int = 0) -> Any:
    """A Python value from the fuzzer's bytes: JSON types, odd types, cycles, extremes."""
    kind = fdp.ConsumeIntInRange(0, 15) if depth < 6 else fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**64), 2**64)
    if kind == 3:
        return 10 ** fdp.ConsumeIntInRange(0, 6000) * (-1 if fdp.ConsumeBool() else 1)
    if kind == 4:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind == 5:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))  # may hold lone surrogates
    if kind == 6:
        return _NASTY[fdp.ConsumeIntInRange(0, len(_NASTY) - 1)]
    if kind == 7:
        return "x" * fdp.ConsumeIntInRange(0, 3_000_000)
    if kind in (8, 9):
        return [_build(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind in (10, 11, 12):
        out: dict[Any, Any] = {}
        for _ in range(fdp.ConsumeIntInRange(0, 5)):
            key: Any = (
                _KEYS[fdp.ConsumeIntInRange(0, len(_KEYS) - 1)]
                if fdp.ConsumeBool()
                else _build(fdp, 6)
            )
            with contextlib.suppress(TypeError):  # an unhashable key
                out[key] = _build(fdp, depth + 1)
        return out
    if kind == 13:  # deep nesting
        value: Any = "leaf"
        wrap_dict = fdp.ConsumeBool()
        for _ in range(fdp.ConsumeIntInRange(0, 5000)):
            value = {"bool": {"filter": [value]}} if wrap_dict else [value]
        return value
    if kind == 14:  # a reference cycle
        cycle: dict[str, Any] = {"id": "c", "text": "t"}
        cycle["self"] = cycle if fdp.ConsumeBool() else [cycle]
        return cycle
    return [{1, 2}, b"bytes", (1, "t"), _Opaque(), frozenset()][fdp.ConsumeIntInRange(0, 4)]


def _value(data: bytes, atheris: Any) -> tuple[str, Any]:
    """``("json", text)`` or ``("value", python value)`` from the input."""
    if not data or data[0] % 3:
        return "json", data[1:]
    return "value", _build(atheris.FuzzedDataProvider(data[1:]))


# ----------------------------------------------------------------------------- targets


class Refused(Exception):
    """The input was refused with a typed reason (counted, not a crash)."""


def _target_prepare(atheris: Any) -> Callable[[bytes], str]:
    from es_neural.ingest.prepare import Prepared, Rejected, prepare_record
    from es_neural.ingest.sources import Record, jsonl_source
    from es_neural.ingest.state import DeadLetterWriter
    from es_neural.text import DEFAULT_TEXT_FIELDS

    tmp = Path(tempfile.mkdtemp(prefix="es-neural-fuzz-"))
    path = tmp / "in.jsonl"
    letters = DeadLetterWriter(tmp / "dead.jsonl")
    reserved = ("embedding", "splade", "content_hash", "leaf_ids")

    def prepare(fields: Any) -> str:
        out = prepare_record(
            Record(0, fields),
            id_field="id",
            text_fields=DEFAULT_TEXT_FIELDS,
            reserved_fields=reserved,
            models_key="m",
        )
        if isinstance(out, Rejected):
            if not out.reason.strip():
                raise AssertionError("a rejection without a reason")
            letters.add(
                position=out.position,
                doc_id=out.doc_id,
                stage=out.stage,
                reason=out.reason,
                record=out.record,
            )
            letters._pending.clear()  # serialised (the part that can fail); not written
            return "refused"
        if not isinstance(out, Prepared):
            raise AssertionError(f"prepare_record returned {type(out).__name__}")
        json.dumps(out.source, allow_nan=False).encode("utf-8")
        return "accepted"

    def run(data: bytes) -> str:
        mode, value = _value(data, atheris)
        if mode == "value":  # a plausible document around the odd value, so more get far
            base = {"id": "doc-1", "title": "A title", "text": "Some text."}
            return prepare({**base, **value} if isinstance(value, dict) else {**base, "v": value})
        path.write_bytes(value)
        outcomes = []
        for record in jsonl_source(path).records():
            if record.fields is None:
                if not record.error:
                    raise AssertionError("a read error without a reason")
                outcomes.append("refused")
            else:
                outcomes.append(prepare(record.fields))
        return "accepted" if "accepted" in outcomes else "refused"

    return run


def _target_filter(atheris: Any) -> Callable[[bytes], str]:
    from es_neural.errors import InvalidInputError
    from es_neural.search.filters import compile_filter
    from es_neural.search.models import SearchRequest
    from tests.support.grammar import DIALECTS, FILTER_DENIED, Grammar

    def run(data: bytes) -> str:
        mode, value = _value(data, atheris)
        if mode == "json":
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                return "not-json"
        try:
            clause = compile_filter(value, denied_fields=FILTER_DENIED)
        except InvalidInputError as exc:
            if not str(exc).strip():
                raise AssertionError("a refusal without a reason") from exc
            return "refused"
        if clause is None:
            return "accepted"
        request = SearchRequest(query="q", filter=value)
        for dialect in DIALECTS:
            Grammar(request, dialect).clause(clause, "filter", scoring=False)
        return "accepted"

    return run


def _target_request(atheris: Any) -> Callable[[bytes], str]:
    from pydantic import ValidationError

    from es_neural.api import ApiSearchRequest
    from es_neural.errors import InvalidInputError
    from es_neural.search.service import leg_bodies
    from tests.support.grammar import DIALECTS, INFO, LEAF_CLAUSE, Grammar

    weights = {"neural": 1.5, "u.s": 0.5, "": 1.0, "a b": float("nan"), "\ud800": 2.0}

    def run(data: bytes) -> str:
        mode, value = _value(data, atheris)
        try:
            if mode == "json":
                api = ApiSearchRequest.model_validate_json(value)
            else:
                api = ApiSearchRequest.model_validate(value)
        except ValidationError as exc:
            if not exc.errors():
                raise AssertionError("a validation error without errors") from exc
            return "refused"
        request = api.search_request()
        for dialect in DIALECTS:
            for leaf in (None, LEAF_CLAUSE):
                try:
                    bodies = leg_bodies(
                        request,
                        dialect=dialect,
                        info=INFO,
                        vector=[0.25, -0.5, 1.0, 0.0],
                        weights=weights,
                        leaf_clause=leaf,
                    )
                except InvalidInputError:
                    return "refused"
                for leg, body in bodies.items():
                    Grammar(request, dialect).body(leg, body)
        return "accepted"

    return run


def _target_api(atheris: Any) -> Callable[[bytes], str]:
    import socket

    from fastapi.testclient import TestClient

    from es_neural.api import create_app
    from es_neural.neural_index import NeuralIndex
    from es_neural.settings import EngineKind, EngineSettings, get_settings
    from tests.support.fakes import HashingDense

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = EngineSettings(url=f"http://127.0.0.1:{port}", max_retries=0, request_timeout=2.0)
    settings = get_settings(
        elasticsearch=dead,
        opensearch=dead,
        engine=EngineKind.ELASTICSEARCH,
        rerank={"model": "off"},
    )
    idx = NeuralIndex("docs", settings=settings, dense=HashingDense(), use_sparse=False)
    client = TestClient(create_app(settings, indexes={"docs": idx}), raise_server_exceptions=False)
    client.__enter__()  # runs the lifespan; the process ends with the fuzzer
    leaks = ("Traceback", 'File "', "site-packages", "/work/", "127.0.0.1")

    def run(data: bytes) -> str:
        mode, value = _value(data, atheris)
        if mode == "value":
            try:
                value = json.dumps(value, default=str).encode("utf-8", "surrogatepass")
            except (ValueError, RecursionError):
                value = data
        response = client.post(
            "/v1/search", content=value, headers={"Content-Type": "application/json"}
        )
        status = response.status_code
        text = response.text
        if any(leak in text for leak in leaks):
            raise AssertionError(f"{status} leaks internals: {text[:300]}")
        if status >= 500 and not (status == 503 and response.headers.get("retry-after")):
            raise AssertionError(f"{status}: {text[:300]}")
        body = response.json()
        if status >= 400 and set(body) != {"error"}:
            raise AssertionError(f"{status} without the error shape: {text[:300]}")
        return "accepted" if status == 503 else "refused"

    return run


_FACTORIES = {
    "prepare": _target_prepare,
    "filter": _target_filter,
    "request": _target_request,
    "api": _target_api,
}

# ----------------------------------------------------------------------------- child process


def _child(target: str, runs: int, seed: int, out: Path, stop_on_crash: bool) -> None:
    import atheris

    sys.path.insert(0, str(REPO))
    with atheris.instrument_imports(include=["es_neural"]):
        import es_neural.api
        import es_neural.ingest.prepare
        import es_neural.search.service  # noqa: F401
    run = _FACTORIES[target](atheris)
    counts = {"cases": 0, "accepted": 0, "refused": 0, "not-json": 0}
    crashes: dict[str, dict[str, Any]] = {}
    crash_dir = out / "crashes" / target
    report = out / f"{target}.json"
    started = time.perf_counter()

    def save() -> None:
        data = {
            "target": target,
            **counts,
            "crashes": list(crashes.values()),
            "seconds": round(time.perf_counter() - started, 2),
        }
        report.write_text(json.dumps(data, indent=1))

    def one(data: bytes) -> None:
        counts["cases"] += 1
        try:
            outcome = run(data)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            entry = crashes.setdefault(
                where, {"where": where, "message": str(exc)[:300], "count": 0, "input": None}
            )
            entry["count"] += 1
            if entry["input"] is None:
                name = crash_dir / hashlib.sha1(data).hexdigest()
                name.write_bytes(data)
                entry["input"] = str(name.relative_to(out))
            save()
            if stop_on_crash:
                raise
            return
        counts[outcome] = counts.get(outcome, 0) + 1
        if counts["cases"] % 1000 == 0 or counts["cases"] >= runs - 1:
            save()

    crash_dir.mkdir(parents=True, exist_ok=True)  # libFuzzer's artifact_prefix must exist
    corpus = Path(tempfile.mkdtemp(prefix=f"es-neural-corpus-{target}-"))
    for i, seed_value in enumerate(SEEDS.get(target, [])):
        (corpus / f"seed-{i}").write_bytes(b"\x01" + json.dumps(seed_value).encode())
    save()
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={runs}",
            f"-seed={seed}",
            "-max_len=8192",
            "-rss_limit_mb=4096",
            f"-artifact_prefix={crash_dir}/",
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()  # never returns: libFuzzer exits the process


# ----------------------------------------------------------------------------- driver


def fuzz(
    targets: Sequence[str],
    runs: int,
    *,
    seed: int = 1,
    out: Path = DEFAULT_OUT,
    stop_on_crash: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run each target for ``runs`` cases in its own process; the per-target reports."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        raise SystemExit(
            "atheris is not installed: pip install -e '.[fuzz]' (Linux x86-64 wheels)"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for target in targets:
        report = out / f"{target}.json"
        report.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            target,
            "--runs",
            str(runs),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ] + (["--stop-on-crash"] if stop_on_crash else [])
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        data: dict[str, Any] = json.loads(report.read_text()) if report.is_file() else {}
        data["returncode"] = proc.returncode
        data["wall_s"] = round(wall, 2)
        done = [line for line in proc.stderr.splitlines() if line.startswith("Done ")]
        data["libfuzzer"] = done[-1] if done else proc.stderr.strip().splitlines()[-1:]
        if proc.returncode != 0 and not data.get("crashes"):
            data["crashes"] = [{"where": "process", "message": proc.stderr[-2000:], "count": 1}]
        results[target] = data
        log(
            f"fuzz {target}: {data.get('cases', 0):,} cases in {wall:.1f} s, "
            f"{data.get('accepted', 0):,} accepted, {data.get('refused', 0):,} refused, "
            f"{sum(c['count'] for c in data.get('crashes', []))} crashing"
        )
    return results


def summary(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "fuzz_cases_run": sum(r.get("cases", 0) for r in results.values()),
        "fuzz_crashes": sum(c["count"] for r in results.values() for c in r.get("crashes", [])),
        "fuzz_unique_crashes": sum(len(r.get("crashes", [])) for r in results.values()),
        "targets": {
            t: {k: r.get(k) for k in ("cases", "accepted", "refused", "wall_s")}
            for t, r in results.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10_000, help="cases per target (default 10000)")
    p.add_argument("--target", action="append", choices=TARGETS, help="repeatable; default: all")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer seed (reproducible runs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports and crash inputs")
    p.add_argument("--stop-on-crash", action="store_true", help="stop at the first crash")
    p.add_argument("--json", action="store_true", help="print one JSON summary line")
    p.add_argument("--reproduce", type=Path, help="run --target once on this saved input")
    p.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reproduce:
        import atheris

        sys.path.insert(0, str(REPO))
        (target,) = args.target or ["?"]
        outcome = _FACTORIES[target](atheris)(args.reproduce.read_bytes())  # raises if it crashes
        print(f"{target}: {outcome}")
        return 0
    if args.child:
        _child(args.child, args.runs, args.seed, args.out, args.stop_on_crash)
        return 0
    results = fuzz(
        args.target or list(TARGETS),
        args.runs,
        seed=args.seed,
        out=args.out,
        stop_on_crash=args.stop_on_crash,
    )
    total = summary(results)
    if args.json:
        print(json.dumps({**total, "results": results}, default=str))
    else:
        print(f"{'target':<10}{'cases':>10}{'accepted':>10}{'refused':>10}{'crashes':>9}")
        for target, r in results.items():
            crashes = sum(c["count"] for c in r.get("crashes", []))
            print(
                f"{target:<10}{r.get('cases', 0):>10,}{r.get('accepted', 0):>10,}"
                f"{r.get('refused', 0):>10,}{crashes:>9}"
            )
            for crash in r.get("crashes", []):
                print(f"  {crash['where']}: {crash['message'][:200]} ({crash.get('input')})")
    return 1 if total["fuzz_crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
