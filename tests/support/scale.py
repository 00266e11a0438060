"""Helpers for the scale-out tests (tests/integration/test_scale_ray.py) and bench/scale.py.

:class:`LoggedTinyModels` is a picklable :class:`~es_neural.scale.options.ModelSpec`: every Ray
encoder worker loads the tiny random BERT from a folder (a real encoder: it tokenises and runs a
model) and wraps it so that

* each process that loads it writes its process id into ``<log_dir>/pids/`` (the test SIGKILLs
  one of them),
* each text it encodes is appended, as a short hash, to ``<log_dir>/encoded-<pid>.log`` (the
  test counts what was encoded, across processes and runs),
* it can sleep ``delay_s`` per batch, so that a run lasts long enough to be interrupted,
* it can hold (sleep, up to ``hold_s``) before any batch once ``hold_after`` texts have been
  encoded across its processes, so that a run cannot finish before the test interrupts it,
  however slowly the machine lets the test watch it.

:class:`StandInModels` are fast stand-in encoders for the write-path benchmark: hashed
deterministic vectors, no model at all (clearly not for retrieval).

Run as ``python -m tests.support.scale ...`` it is a driver process for the driver-kill test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LoggedTinyModels", "StandInModels", "encoded_hashes", "pids", "text_hash"]


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class _Logged:
    """A real encoder that logs what it encodes (delegates everything else)."""

    def __init__(
        self, inner: Any, log: Path, delay_s: float, hold_after: int | None, hold_s: float
    ) -> None:
        self.inner = inner
        self.log = log
        self.delay_s = delay_s
        self.hold_after = hold_after
        self.hold_s = hold_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_documents(self, texts: Sequence[str]) -> Any:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.hold_after is not None:
            deadline = time.monotonic() + self.hold_s
            while (
                len(encoded_hashes(self.log.parent)) >= self.hold_after
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
        out = self.inner.encode_documents(texts)
        with self.log.open("a", encoding="utf-8") as f:
            f.write("".join(text_hash(t) + "\n" for t in texts))
        return out


@dataclass(frozen=True)
class LoggedTinyModels:
    folder: str
    log_dir: str
    delay_s: float = 0.0
    sparse: bool = False
    hold_after: int | None = None
    hold_s: float = 300.0
    #: The process that made the spec (the driver): it is not a worker, so it writes no pid file.
    driver_pid: int = field(default_factory=os.getpid)

    def load(self) -> tuple[Any, Any, None]:
        from es_neural.encoders.dense import SentenceTransformerDense
        from es_neural.encoders.sparse import SpladeEncoder

        log_dir = Path(self.log_dir)
        (log_dir / "pids").mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        if pid != self.driver_pid:
            (log_dir / "pids" / str(pid)).write_text(str(time.time()), encoding="utf-8")
        dense = SentenceTransformerDense(self.folder, name="tiny-bert")
        dense.load()
        sparse = None
        if self.sparse:
            sparse = SpladeEncoder(self.folder, name="tiny-bert")
            sparse.load()
        log = log_dir / f"encoded-{pid}.log"
        return _Logged(dense, log, self.delay_s, self.hold_after, self.hold_s), sparse, None


def pids(log_dir: Path) -> list[int]:
    folder = log_dir / "pids"
    return sorted(int(p.name) for p in folder.iterdir()) if folder.is_dir() else []


def encoded_hashes(log_dir: Path) -> list[str]:
    """Every text hash encoded so far (repeats kept), in all processes."""
    out: list[str] = []
    for log in sorted(log_dir.glob("encoded-*.log")):
        out.extend(line for line in log.read_text(encoding="utf-8").splitlines() if line)
    return out


# ----- fast stand-in encoders (write-path benchmark) -----


class _HashDense:
    """Deterministic pseudo-vectors from a hash of the text: no model, microseconds per text."""

    def __init__(self, dims: int = 32) -> None:
        from es_neural.encoders.fingerprint import ModelFingerprint

        self._dims = dims
        self.similarity = "cosine"
        self.max_seq_length = 10_000
        self.fingerprint = ModelFingerprint(
            kind="dense", name="stand-in-hash", revision="1", dims=dims, normalize=True
        )
        self.cache_key = "stand-in-hash-1"

    @property
    def dims(self) -> int:
        return self._dims

    def load(self) -> None:
        return None

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self._dims), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self._dims).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out

    encode_queries = encode_documents


@dataclass(frozen=True)
class StandInModels:
    dims: int = 32

    def load(self) -> tuple[Any, None, None]:
        return _HashDense(self.dims), None, None


# ----- a driver process (the driver-kill tests) -----


def main() -> None:
    """``ingest`` a file or ``migrate`` an index on the Ray cluster at ``--address``, with
    logged tiny models; the report goes to ``--report`` as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["ingest", "migrate"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--settings", required=True, help="Settings as JSON")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--hold-after", type=int, default=None)
    parser.add_argument("--report", required=True)
    # ingest
    parser.add_argument("--file")
    parser.add_argument("--index")
    parser.add_argument("--checkpoint")
    parser.add_argument("--dead")
    parser.add_argument("--block-size", type=int, default=50)
    # migrate
    parser.add_argument("--source")
    parser.add_argument("--alias")
    parser.add_argument("--state-dir")
    parser.add_argument("--slices", type=int, default=4)
    args = parser.parse_args()

    from es_neural.scale import ScaleOptions
    from es_neural.settings import Settings

    settings = Settings.model_validate_json(args.settings)
    models = LoggedTinyModels(
        args.folder, args.log_dir, delay_s=args.delay_s, hold_after=args.hold_after
    )
    scale = ScaleOptions(address=args.address, workers=args.workers, block_size=args.block_size)
    if args.command == "ingest":
        data = run_ingest(args, settings, models, scale)
    else:
        data = run_migrate(args, settings, models, scale)
    Path(args.report).write_text(json.dumps(data, default=str), encoding="utf-8")


def run_ingest(args: Any, settings: Any, models: LoggedTinyModels, scale: Any) -> dict[str, Any]:
    from es_neural.ingest.pipeline import IngestOptions
    from es_neural.scale import ingest_ray

    report = ingest_ray(
        args.file,
        args.index,
        settings=settings,
        options=IngestOptions(
            batch_size=args.batch_size,
            progress=False,
            checkpoint_path=Path(args.checkpoint),
            dead_letter_path=Path(args.dead),
        ),
        scale=scale,
        models=models,
    )
    return asdict(report)


def run_migrate(args: Any, settings: Any, models: LoggedTinyModels, scale: Any) -> dict[str, Any]:
    from es_neural.dialects import get_dialect
    from es_neural.migrate import MigrationOptions
    from es_neural.scale import RayMigrator

    dense, sparse, leaves = models.load()
    source = get_dialect(settings)
    try:
        report = RayMigrator(
            source,
            dense=dense,
            sparse=sparse,
            leaves=leaves,
            options=MigrationOptions(
                alias=args.alias, workers=args.slices, batch_size=args.batch_size, progress=False
            ),
            state_dir=Path(args.state_dir),
            settings=settings,
            models=models,
            scale=scale,
        ).run(args.source)
    finally:
        source.close()
    return report.to_dict()


if __name__ == "__main__":
    main()
