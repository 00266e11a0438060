"""Pack what a GPU benchmark or training run needs onto a machine that reaches no registry and no
model hub, within a 64 MiB transfer: the embedded models and SciFact.

The embedded dense model's weights are 87 MiB in fp32, so they travel as fp16 (the weights
rounded to fp16 once, then xz-compressed) and :func:`unpack` writes them back as fp32 files on
the other side. Every precision measured there (fp32, bf16, fp16) therefore starts from the same
fp16-rounded weights: comparisons between precisions are exact, and the fp32 row differs from the
shipped fp32 model only by that one rounding (dense cosine to the shipped model > 0.9999).

    python bench/device_pack.py pack --out .device    # here, with the embedded models installed
    python bench/device_pack.py unpack --pack .device  # there, before the benchmark

``pack`` writes ``.device/pack/models.tar.xz`` (``minilm``, ``splade-tiny``) and
``.device/data/scifact-corpus.jsonl.gz``; ``unpack`` writes ``.device/models/{minilm,splade-tiny}``
with fp32 safetensors. Nothing here is committed: ``.device/`` is ignored.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

_SKIP = {"model.safetensors", "data_config.json", "README.md", ".gitattributes", "heads.pt"}


def _cast_folder(src: Path, dst: Path, dtype_name: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    dtype = getattr(torch, dtype_name)
    shutil.copytree(src, dst, ignore=lambda _d, names: [n for n in names if n in _SKIP])
    state = load_file(src / "model.safetensors")
    cast = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(cast, dst / "model.safetensors", metadata={"format": "pt"})


def pack(out: Path, scifact: Path) -> None:
    from es_neural.encoders.registry import embedded_dense_path, embedded_sparse_path

    (out / "pack").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _cast_folder(embedded_dense_path(), root / "minilm", "float16")
        _cast_folder(embedded_sparse_path(), root / "splade-tiny", "float16")
        target = out / "pack" / "models.tar.xz"
        with tarfile.open(target, "w:xz", preset=6) as tar:
            tar.add(root / "minilm", arcname="minilm")
            tar.add(root / "splade-tiny", arcname="splade-tiny")
    with (
        (scifact / "corpus.jsonl").open("rb") as src,
        gzip.open(out / "data" / "scifact-corpus.jsonl.gz", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    print(f"packed into {out}: {target.stat().st_size / 2**20:.1f} MiB of models")


def unpack(pack_root: Path) -> None:
    models = pack_root / "models"
    models.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        tarfile.open(pack_root / "pack" / "models.tar.xz", "r:xz") as tar,
    ):
        # the "data" filter where this Python has it (3.11.4+; Debian's 3.11.2 does not)
        safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp, **safe)
        for name in ("minilm", "splade-tiny"):
            target = models / name
            if target.exists():
                shutil.rmtree(target)
            _cast_folder(Path(tmp) / name, target, "float32")
    print(f"unpacked fp32 models into {models}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, default=Path(".device"))
    p.add_argument("--scifact", type=Path, default=Path("../shared/data/scifact"))
    u = sub.add_parser("unpack")
    u.add_argument("--pack", type=Path, default=Path(".device"))
    args = parser.parse_args()
    if args.verb == "pack":
        pack(args.out, args.scifact)
    else:
        unpack(args.pack)


if __name__ == "__main__":
    main()
