"""Label-free, query-adaptive fusion against the default (issue 18, item 4).

The default fusion (linear, min-max, equal weights) loses to the best single leg on three of the
five labelled domains, by 0.016-0.029 on test: one leg is far behind there (BM25 on WikiQA and
TrecQA, SPLADE-tiny on StackExchange) and equal weights let it pull the fused order down. Can a
query decide, without labels, which of its legs to trust? This script scores, on the legs
``bench/reranker_gpu.py`` mined and cached (``--legs-cache``, exact BM25 and the embedded dense
and SPLADE encoders, top 100 per leg), the default against weights computed per query from the
legs themselves:

* ``agreement``: a leg's weight is ``floor`` plus the mean overlap of its top ``depth`` with each
  other leg's top ``depth`` (a leg that disagrees with the rest is more often the weak one);
* ``peakedness``: one minus the mean min-max score of a leg's hits 2..10 (a leg whose best hit
  stands out from the next ones is confident; query-performance prediction);
* ``no BM25``: the two neural legs alone, equal weights (a contrast, not label-free advice).

Every variant fuses through :func:`es_neural.search.fusion.fuse` (linear, min-max) with the
weights it computed, so it is what the searcher would do with those weights. nDCG@10 on the
test and dev splits; the domains' pools are those of the cache (README "Default fusion").

    .venv/bin/python bench/fusion_adaptive.py --data /tmp/pack --legs-cache /tmp/rr/legs.json.gz

Ends with ``RESULT {json}``: per split, each variant's nDCG@10 per domain, mean and worst margin
over the best single leg.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from reranker_gpu import read_legs  # noqa: E402  (the cache's own reader)

from es_neural.search.fusion import RankedList, fuse  # noqa: E402
from es_neural.train import mix  # noqa: E402
from es_neural.train.mining import LEGS, ndcg_at_k  # noqa: E402

Hits = Sequence[tuple[str, float]]
Weigher = Callable[[Mapping[str, Hits]], dict[str, float]]


def overlap(a: Hits, b: Hits, depth: int) -> float:
    return len({d for d, _ in a[:depth]} & {d for d, _ in b[:depth]}) / depth


def agreement(depth: int, floor: float) -> Weigher:
    def weigh(legs: Mapping[str, Hits]) -> dict[str, float]:
        out = {}
        for leg, hits in legs.items():
            others = [overlap(hits, legs[o], depth) for o in legs if o != leg]
            out[leg] = floor + (sum(others) / len(others) if others else 1.0)
        return out if sum(out.values()) > 0 else dict.fromkeys(legs, 1.0)

    return weigh


def peakedness(legs: Mapping[str, Hits]) -> dict[str, float]:
    out = {}
    for leg, hits in legs.items():
        scores = [s for _, s in hits[:10]]
        lo, hi = min(scores), max(scores)
        if len(scores) < 2 or hi == lo:
            out[leg] = 1.0
            continue
        out[leg] = 1.0 - sum((s - lo) / (hi - lo) for s in scores[1:]) / (len(scores) - 1)
    return out if sum(out.values()) > 0 else dict.fromkeys(legs, 1.0)


def equal(legs: Mapping[str, Hits]) -> dict[str, float]:
    return dict.fromkeys(legs, 1.0)


def no_bm25(legs: Mapping[str, Hits]) -> dict[str, float]:
    return {leg: (0.0 if leg == "bm25" and len(legs) > 1 else 1.0) for leg in legs}


VARIANTS: dict[str, Weigher] = {
    "default (equal, min-max)": equal,
    "agreement@10": agreement(10, 0.0),
    "agreement@10 + 0.1": agreement(10, 0.1),
    "agreement@20 + 0.25": agreement(20, 0.25),
    "peakedness": peakedness,
    "no BM25 (contrast)": no_bm25,
}


def fused(legs: Mapping[str, Hits], weigh: Weigher, depth: int) -> list[tuple[str, float]]:
    present = {leg: list(hits)[:depth] for leg, hits in legs.items() if hits}
    if not present:
        return []
    lists = [RankedList.from_scores(leg, hits) for leg, hits in present.items()]
    result = fuse(lists, method="linear", normalization="min-max", weights=weigh(present))
    return result.head(depth)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="scripts/pack_device_train.py output")
    p.add_argument("--legs-cache", type=Path, required=True, help="bench/reranker_gpu.py's cache")
    p.add_argument("--depth", type=int, default=100)
    args = p.parse_args(argv)
    if not args.legs_cache.is_file():
        print(f"no legs cache at {args.legs_cache}: run bench/reranker_gpu.py with --legs-cache")
        return 2
    legs = read_legs(args.legs_cache)
    domains = [d for d in mix.read_pack(args.data) if d.labelled and d.name in legs]
    result: dict[str, Any] = {}
    for split in ("test", "dev"):
        rows: dict[str, dict[str, float]] = {}
        for d in domains:
            by_leg = legs[d.name]
            # the queries the cache holds (a --tiny cache holds a few of each split)
            qrels = {
                q: judged
                for q, judged in d.qrels(split).items()
                if any(q in by_leg[leg] for leg in LEGS)
            }
            if not qrels:
                continue
            row = {leg: ndcg_at_k(qrels, by_leg[leg]) for leg in LEGS}
            for name, weigh in VARIANTS.items():
                ranking = {
                    q: fused({leg: by_leg[leg].get(q, []) for leg in LEGS}, weigh, args.depth)
                    for q in qrels
                }
                row[name] = ndcg_at_k(qrels, ranking)
            rows[d.name] = row
        names = list(rows)
        print(f"\n{split} (nDCG@10)")
        print(f"{'':28}" + "".join(f"{n[:10]:>11}" for n in names) + f"{'mean':>9}{'worst':>9}")
        summary = {}
        for key in (*LEGS, *VARIANTS):
            values = [rows[n][key] for n in names]
            line = f"{key:28}" + "".join(f"{v:11.4f}" for v in values)
            if key in VARIANTS:
                margins = [rows[n][key] - max(rows[n][leg] for leg in LEGS) for n in names]
                mean = sum(values) / len(values)
                line += f"{mean:9.4f}{min(margins):+9.4f}"
                summary[key] = {
                    "by_domain": {n: round(rows[n][key], 4) for n in names},
                    "mean": round(mean, 4),
                    "worst_margin_over_best_leg": round(min(margins), 4),
                }
            print(line)
        result[split] = summary
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
