"""Shared helpers of the benchmarks: corpora, memory sampling, percentiles, tables, RESULT lines,
and ``es-neural serve`` in a subprocess (:func:`api_server`).

Benchmarks are scripts (``python bench/ingest.py``), not part of the package and not run in CI.
The large corpus is generated from an offline dictionary installed from Debian (``dict-gcide``)
into ``~/.cache/es-neural/bench/``; nothing generated is committed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
SHARED_DATA = REPO.parent / "shared" / "data"
SCIFACT_CORPUS = SHARED_DATA / "scifact" / "corpus.jsonl"
SCIFACT_QUERIES = SHARED_DATA / "scifact" / "queries.jsonl"
BENCH_CACHE = Path.home() / ".cache" / "es-neural" / "bench"

GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")
GCIDE_INDEX = Path("/usr/share/dictd/gcide.index")
GCIDE_HINT = (
    "the large benchmark corpus is built from GCIDE (the Collaborative International Dictionary "
    "of English); install it with `apt-get install -y dict-gcide` (Debian/Ubuntu), which provides "
    f"{GCIDE_DICT} and {GCIDE_INDEX}"
)
#: Bump when the parsing below changes: the cached corpus file name carries it.
GCIDE_FORMAT = 1
_MAX_TEXT_CHARS = 1200

# ----- corpora -----

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}
_CITATION = re.compile(r"\[(?:1913 Webster|PJC|WordNet 1\.5|Webster 1913 Suppl\.|RN)[^\]]*\]")
_PRON = re.compile(r"\\[^\\\n]*\\")
_BRACES = re.compile(r"[{}]")
_SPACES = re.compile(r"\s+")


def _dictd_number(text: str) -> int:
    """dictd's index numbers are base64 digits, most significant first."""
    n = 0
    for c in text:
        n = n * 64 + _B64_VALUE[c]
    return n


def _clean_entry(headword: str, body: str) -> str:
    """A GCIDE entry as plain text: pronunciations, citation tags and link braces removed."""
    text = _CITATION.sub(" ", body)
    text = _PRON.sub(" ", text)
    text = _BRACES.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    if text.lower().startswith(headword.lower()):
        text = text[len(headword) :].lstrip(" ,")
    return text[:_MAX_TEXT_CHARS]


def gcide_documents() -> Iterator[dict[str, str]]:
    """Every distinct GCIDE entry as ``{"_id", "title", "text"}``, in the index's order."""
    if not (GCIDE_DICT.is_file() and GCIDE_INDEX.is_file()):
        raise SystemExit(GCIDE_HINT)
    with gzip.open(GCIDE_DICT) as f:  # dictzip is gzip-compatible
        data = f.read()
    seen: set[tuple[int, int]] = set()
    with GCIDE_INDEX.open(encoding="utf-8") as index:
        for line in index:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00-"):
                continue
            headword, offset, length = parts[0], _dictd_number(parts[1]), _dictd_number(parts[2])
            if (offset, length) in seen:
                continue
            seen.add((offset, length))
            body = data[offset : offset + length].decode("utf-8", "replace")
            # The index also lists secondary headwords; the entry's own comes before its "\\".
            first_line = body.split("\n", 1)[0]
            if " \\" in first_line:
                headword = first_line.split(" \\", 1)[0].strip() or headword
            text = _clean_entry(headword, body)
            if not text:
                continue
            doc_id = "gcide-" + hashlib.sha1(f"{offset}:{length}".encode()).hexdigest()[:12]
            yield {"_id": doc_id, "title": headword, "text": text}


def gcide_corpus(docs: int) -> Path:
    """A JSONL file of the first ``docs`` GCIDE documents (built once, then reused)."""
    path = BENCH_CACHE / f"gcide-v{GCIDE_FORMAT}-{docs}.jsonl"
    if path.is_file():
        return path
    BENCH_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    written = 0
    with tmp.open("w", encoding="utf-8") as f:
        for doc in gcide_documents():
            if written >= docs:
                break
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            written += 1
    if written < docs:
        tmp.unlink()
        raise SystemExit(f"GCIDE holds only {written} documents, {docs} were asked for")
    tmp.replace(path)
    return path


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(out) >= limit:
                break
            if line.strip():
                out.append(json.loads(line))
    return out


def head_jsonl(path: Path, limit: int) -> Path:
    """The first ``limit`` lines of ``path`` as their own file (cached next to the big corpus)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    out = BENCH_CACHE / f"{path.stem}-{digest}-head{limit}.jsonl"
    if out.is_file():
        return out
    BENCH_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with path.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= limit:
                break
            dst.write(line)
    tmp.replace(out)
    return out


# ----- memory -----


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


class RssSampler:
    """Samples this process's RSS in a thread (psutil); ``peak_mb`` after :meth:`stop`."""

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self.samples: list[tuple[float, float]] = []
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            mb = self._process.memory_info().rss / 2**20
            self.peak_mb = max(self.peak_mb, mb)
            self.samples.append((time.perf_counter() - started, mb))
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ----- statistics -----


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def interleaved_latency_ms(
    sides: Mapping[str, Callable[[str], Any]],
    texts: Sequence[str],
    *,
    rounds: int,
    warmup: int = 10,
) -> dict[str, list[float]]:
    """Milliseconds per call of each side on each text, the sides taking turns on every text
    (so that a noisy moment hits them all), after ``warmup`` texts through every side."""
    for text in texts[:warmup]:
        for fn in sides.values():
            fn(text)
    samples: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(rounds):
        for text in texts:
            for side, fn in sides.items():
                began = time.perf_counter()
                fn(text)
                samples[side].append((time.perf_counter() - began) * 1000)
    return samples


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        mean = sum(values) / len(values) if values else math.nan
        return cls(
            len(values),
            percentile(values, 50),
            percentile(values, 95),
            percentile(values, 99),
            mean,
        )


def rounded(value: Any, digits: int = 2) -> Any:
    """``value`` with every float rounded (for RESULT lines), NaN as None."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    if isinstance(value, Mapping):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


# ----- output -----


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table (numbers right-aligned)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def write_json(name: str, data: Mapping[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def print_result(data: Mapping[str, Any]) -> None:
    """The machine-readable last line: ``RESULT {json}``."""
    sys.stdout.flush()
    print("RESULT " + json.dumps(rounded(data), separators=(",", ":")), flush=True)


def log(message: str) -> None:
    """Progress to stderr (stdout holds the tables and the RESULT line)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_note() -> str:
    return f"{os.cpu_count()} CPUs (shared), torch threads {_torch_threads()}"


def _torch_threads() -> int | str:
    try:
        import torch

        return int(torch.get_num_threads())
    except Exception:  # pragma: no cover - torch is a dependency
        return "?"


# ----- the HTTP API in a subprocess -----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ApiServer:
    """``es-neural serve`` running in its own process group on a loopback port."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Until ``/readyz`` answers 200 (models loaded); exits if the server dies or never does."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the API server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise SystemExit("the API server did not become ready")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 30 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_api_server(engine: str, index: str, env: Mapping[str, str] | None = None) -> ApiServer:
    """``es-neural serve --index index --engine engine`` on a free loopback port, with ``env``
    added to this process's environment (settings such as ``ES_NEURAL_RERANK__MODEL``)."""
    overrides = dict(env or {})
    port = free_port()
    exe = Path(sys.executable).with_name("es-neural")
    cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--index", index]
    cmd += ["--engine", engine, "--log-level", "warning"]
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **overrides}
    shown = [f"{k}={v}" for k, v in overrides.items()]
    log("server: " + " ".join([*shown, "es-neural", *cmd[1:]]))
    return ApiServer(subprocess.Popen(cmd, env=full_env, start_new_session=True), port)


@contextmanager
def api_server(
    engine: str,
    index: str,
    env: Mapping[str, str] | None = None,
    *,
    ready_timeout_s: float = 300.0,
) -> Iterator[ApiServer]:
    """A ready API server for the ``with`` block, stopped after it (also on errors)."""
    server = start_api_server(engine, index, env)
    try:
        server.wait_ready(ready_timeout_s)
        yield server
    finally:
        server.stop()
