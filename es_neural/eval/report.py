"""Evaluation reports: one row per configuration, as Markdown, JSON and a PNG chart.

The report holds what was measured (ranx metrics on the evaluated split, latencies), what was
tuned on validation (fusion weights, interpolation weight), each configuration's validation
score and the one chosen by it, and, for known datasets, published reference numbers to read the
table against. The Markdown table bolds the configuration chosen on validation (by the rules of
``es-neural eval --recommend``, :func:`es_neural.eval.recommend.decide`), never the one that
scored best on the evaluated split (that would be selection on test). Nothing in it depends
on the clock except the latencies themselves.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ANCHORS", "EvalReport", "ResultRow", "write_chart"]

#: Published nDCG@10 references per dataset (test split): (label, low, high).
ANCHORS: Mapping[str, tuple[tuple[str, float, float], ...]] = {
    "scifact": (
        ("BM25 (BEIR / Anserini)", 0.665, 0.69),
        ("all-MiniLM-L6-v2", 0.645, 0.645),
        ("BM25 + MiniLM-L6 cross-encoder", 0.688, 0.688),
        ("SPLADE++", 0.704, 0.704),
        ("neural-cherche BM25 + ColBERT", 0.72, 0.72),
    ),
}


@dataclass(frozen=True)
class ResultRow:
    name: str
    config: dict[str, Any]
    metrics: dict[str, float]
    latency: dict[str, float]
    queries: int
    rerank_skipped: int = 0


@dataclass
class EvalReport:
    dataset: str
    split: str
    engine: str
    index: str
    queries: int
    rows: list[ResultRow] = field(default_factory=list)
    tuning: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Median cost of encoding one query (uncached), per model, in ms.
    query_encoding_ms: dict[str, float] = field(default_factory=dict)
    metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
    #: Validation nDCG@10 of each configuration measured there (the leaf filter is not).
    validation: dict[str, float] = field(default_factory=dict)
    #: The row chosen on validation (see :meth:`choose`); ``None``: untuned, or not run here.
    chosen: str | None = None
    #: The configuration validation chose, whether run here or not, and why.
    decided: str | None = None
    decided_reasons: list[str] = field(default_factory=list)
    #: Evaluated queries longer than each model's window (truncated, as documents are).
    queries_truncated: dict[str, int] = field(default_factory=dict)

    @property
    def anchors(self) -> tuple[tuple[str, float, float], ...]:
        return ANCHORS.get(self.dataset.lower(), ())

    def best(self, metric: str = "ndcg@10") -> ResultRow | None:
        """The row best on the evaluated split (for reading only: choosing by it would be
        selection on test; :attr:`chosen` is the choice)."""
        return max(self.rows, key=lambda r: r.metrics.get(metric, -math.inf), default=None)

    def choose(self, decided: str | None = None, reasons: Sequence[str] = ()) -> str | None:
        """Set :attr:`chosen`. ``decided``: the configuration validation chose by the
        recommendation's rules (the pipeline passes it; it is bold when it was run here).
        Without it, the run row best on validation (first on ties)."""
        if decided is not None:
            self.decided, self.decided_reasons = decided, list(reasons)
            self.chosen = decided if any(r.name == decided for r in self.rows) else None
            return self.chosen
        names = [r.name for r in self.rows if r.name in self.validation]
        self.chosen = max(names, key=lambda n: self.validation[n], default=None)
        return self.chosen

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = list(self.metrics)
        data["anchors"] = [
            {"name": name, "ndcg@10_low": low, "ndcg@10_high": high}
            for name, low, high in self.anchors
        ]
        best = self.best()
        data["best"] = best.name if best is not None else None
        data["chosen_on_validation"] = self.chosen if self.decided is None else self.decided
        return data

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", "utf-8")
        return out

    def markdown(self) -> str:
        names = {"ndcg@10": "nDCG@10", "recall@100": "recall@100", "mrr@10": "MRR@10"}
        head = ["configuration", *(names.get(m, m) for m in self.metrics), "p50 ms", "mean ms"]
        lines = [
            f"{self.dataset} `{self.split}` ({self.queries} queries), {self.engine}, "
            f"index `{self.index}`",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        ]
        for row in self.rows:
            cells = [f"{row.metrics[m]:.4f}" for m in self.metrics]
            name = f"**{row.name}**" if row.name == self.chosen else row.name
            lines.append(
                "| "
                + " | ".join(
                    [name, *cells, f"{row.latency['p50_ms']:.1f}", f"{row.latency['mean_ms']:.1f}"]
                )
                + " |"
            )
        lines += ["", self._choice_line()]
        if self.anchors:
            lines += ["", "Published nDCG@10 on this split, for reference:", ""]
            for label, low, high in self.anchors:
                value = f"{low:.3f}" if low == high else f"{low:.3f}-{high:.3f}"
                lines.append(f"- {label}: {value}")
        if self.tuning:
            lines += [
                "",
                "Tuned on validation (carved from the tuning split, never the evaluated one):",
            ]
            lines += ["", "```json", json.dumps(self.tuning, indent=2), "```"]
        if self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"

    def _choice_line(self) -> str:
        reasons = "".join(f"\n- {reason}" for reason in self.decided_reasons)
        if self.decided is not None and self.chosen is None:
            return (
                f"No row is bold: validation chose {self.decided}, which was not run here."
                + reasons
            )
        if self.chosen is None:
            return (
                "No row is bold: nothing was chosen on validation (no tuning split), and the "
                "evaluated split chooses nothing."
            )
        score = self.validation.get(self.chosen)
        there = f"nDCG@10 {score:.4f} there" if score is not None else "validation"
        rule = (
            ", by the rules of `--recommend`: the untuned default fusion unless another row leads "
            "it by more than the margin"
            if self.decided is not None
            else ""
        )
        return (
            f"Bold: the configuration chosen on validation ({there}){rule}; not the best on "
            "this split." + reasons
        )


def write_chart(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """A PNG: nDCG@10 per configuration (bars, anchors as dashed lines) and p50 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: Sequence[ResultRow] = report.rows
    names = [r.name for r in rows]
    ndcg = [r.metrics.get("ndcg@10", math.nan) for r in rows]
    p50 = [r.latency.get("p50_ms", math.nan) for r in rows]
    height = max(3.0, 0.32 * len(rows) + 1.5)
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    y = list(range(len(rows)))
    ax1.barh(y, ndcg, color="#4c72b0")
    for i, value in enumerate(ndcg):
        ax1.text(value + 0.003, i, f"{value:.3f}", va="center", fontsize=8)
    colors = ["#c44e52", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3"]
    for (label, low, high), color in zip(report.anchors, colors, strict=False):
        ax1.axvline(high, linestyle="--", linewidth=1, color=color, label=f"{label} {high:.3f}")
        if low != high:
            ax1.axvspan(low, high, color=color, alpha=0.08)
    finite = [v for v in ndcg if math.isfinite(v)] or [0.0]
    ax1.set_xlim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.04))
    ax1.set_yticks(y, names, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("nDCG@10")
    ax1.set_title(f"{report.dataset} {report.split} ({report.queries} queries), {report.engine}")
    if report.anchors:
        ax1.legend(fontsize=7, loc="lower right")
    ax2.barh(y, p50, color="#55a868")
    ax2.set_xscale("log")
    ax2.set_xlabel("p50 latency per query (ms, log)")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
