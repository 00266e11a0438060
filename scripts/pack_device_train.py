"""Write the training mix of issue 18 into ``.device/train/`` for the GPU job.

The GPU machine cannot read ``../shared``; this packs the labelled domains of
:mod:`es_neural.train.mix` (MS MARCO dev-small pairs, WikiQA, TrecQA, a StackExchange subsample,
SciFact) as xz-compressed JSON, one file per domain plus ``manifest.json``; the label-free title
domains are rebuilt on the device from these. Run from the repository root::

    .venv/bin/python scripts/pack_device_train.py            # -> .device/train (~7 MB)
    .venv/bin/python scripts/pack_device_train.py --out /tmp/pack --stackexchange-limit 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from es_neural.train.mix import load_all, write_pack  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-root", type=Path, default=SHARED / "train")
    p.add_argument("--scifact", type=Path, default=SHARED / "scifact")
    p.add_argument("--out", type=Path, default=REPO / ".device" / "train")
    p.add_argument("--stackexchange-limit", type=int, default=4000)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-mb", type=float, default=12.0, help="refuse a bigger pack")
    args = p.parse_args(argv)
    started = time.perf_counter()
    domains = load_all(
        args.train_root,
        args.scifact,
        seed=args.seed,
        stackexchange_limit=args.stackexchange_limit,
        pseudo_limit=0,
    )
    if args.out.is_dir():  # only an earlier pack's own files are replaced
        for stale in [*args.out.glob("*.json.xz"), *args.out.glob("*.json.gz")]:
            stale.unlink()
    manifest = write_pack(domains, args.out)
    size_mb = manifest["bytes"] / 1e6
    print(json.dumps(manifest, indent=1))
    print(f"wrote {args.out} ({size_mb:.2f} MB) in {time.perf_counter() - started:.0f}s")
    if size_mb > args.max_mb:
        print(f"pack is larger than {args.max_mb} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
