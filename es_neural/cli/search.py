"""``es-neural search``: one hybrid search from the command line.

Run here, a search loads only what its request needs: the dense encoder for the dense leg, SPLADE
for the sparse leg, the reranker when one is asked for (``--rerank``) or configured; a BM25-only
search loads no model at all. The loaders' weight-loading bars and informational logs are off
(:func:`quiet_model_loaders`). With ``--api URL`` the request goes to a running ``es-neural
serve`` instead, which holds its models loaded, so nothing is loaded here.

``--explain`` prints, per hit, each stage's own rank and score (every leg, the fusion, the
reranker, the diversification) and, once, the formula of the final score and order
(:func:`score_formula`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from es_neural.cli.data import EngineOpt, IndexOption, fail, settings_or_exit
from es_neural.errors import EsNeuralError
from es_neural.search.models import FusionConfig, HitExplain, SearchRequest, SearchResponse
from es_neural.search.profile import Profile, leave_unset, load_profile
from es_neural.search.rerank import NO_RERANKER_REASON
from es_neural.settings import EngineKind, Settings

if TYPE_CHECKING:
    from es_neural.search.rerank import CrossEncoderReranker

__all__ = [
    "FusionChoice",
    "NormalizationChoice",
    "api_search",
    "print_response",
    "quiet_model_loaders",
    "score_formula",
    "search",
]

_out = Console()
_err = Console(stderr=True)

LEGS = ("bm25", "dense", "sparse")


class FusionChoice(StrEnum):
    RRF = "rrf"
    LINEAR = "linear"


class NormalizationChoice(StrEnum):
    """The spellings of :attr:`es_neural.search.models.FusionConfig.normalization`."""

    MINMAX = "minmax"
    ZSCORE = "zscore"
    L2 = "l2"
    NONE = "none"


# ----- loaders -----


def quiet_model_loaders() -> None:
    """Silence what the model loaders print: transformers' weight-loading bars and its info and
    warning logs (sentence-transformers' too). Download bars of the hub stay on. Call it just
    before loading a model: it imports ``transformers.utils.logging``."""
    if importlib.util.find_spec("transformers") is None:
        return  # the lean install: its query encoders (ONNX Runtime) print nothing
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_bars = not are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # transformers' own bars; it turns the hub's off too
    if hub_bars:
        enable_progress_bars()  # downloads keep their bars
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)


def _reranker(settings: Settings, rerank: bool | None) -> CrossEncoderReranker | None:
    """The reranker of this search: ``None`` when not wanted or none is configured.

    ``--rerank`` (``True``) with none configured uses the embedded one; when that is missing
    too, or cannot be loaded, it is an error that says what to set.
    """
    if rerank is False:
        return None
    from es_neural.search.rerank import get_reranker

    config = settings.rerank
    if rerank and config.model == "off":
        config = config.model_copy(update={"model": "embedded"})
    reranker = get_reranker(config)
    if not rerank:
        return reranker  # configured: loaded on first use
    if reranker is None:
        raise fail(
            "--rerank: the embedded reranker is not in this build; set ES_NEURAL_RERANK__MODEL "
            "to a CrossEncoder folder or hub id (e.g. cross-encoder/ms-marco-MiniLM-L6-v2)"
        )
    try:
        if reranker.needs_torch():  # the ONNX path prints nothing and imports no transformers
            quiet_model_loaders()
        reranker.load()
    except Exception as exc:  # any loader failure (missing folder, hub offline): said, not raised
        raise fail(
            escape(
                f"--rerank: cannot load the reranker {config.model!r} ({type(exc).__name__}: "
                f"{str(exc)[:200]}); set ES_NEURAL_RERANK__MODEL to a CrossEncoder folder or hub id"
            )
        ) from None
    return reranker


def search_here(
    settings: Settings,
    index: str,
    engine: EngineKind | None,
    request: SearchRequest,
    *,
    rerank: bool | None,
    profile: Profile | None = None,
) -> SearchResponse:
    """``request`` on ``index`` in this process, loading only the models it needs (with a
    ``profile``'s defaults applied: :mod:`es_neural.search.profile`)."""
    from es_neural.encoders.registry import (
        get_dense_encoder,
        get_sparse_encoder,
        queries_need_torch,
    )
    from es_neural.neural_index import NeuralIndex
    from es_neural.search.service import HybridSearcher

    if profile is not None:
        request = profile.apply(request)
        settings = settings.with_(rerank=profile.reranker_settings(settings.rerank))
    reranker = _reranker(settings, rerank)
    want_dense = request.dense.enabled or request.tree.enabled
    # Only a torch model prints while loading (importing transformers to quiet it takes ~2 s).
    if (want_dense and queries_need_torch(settings.dense)) or (
        request.sparse.enabled and queries_need_torch(settings.sparse)
    ):
        quiet_model_loaders()
    try:
        dense = get_dense_encoder(settings.dense) if want_dense else None
        sparse = get_sparse_encoder(settings.sparse) if request.sparse.enabled else None
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    # NeuralIndex names the index (prefix) and opens the engine; its own searcher would load
    # the dense encoder whatever the request, so the searcher is built here with what it needs.
    idx = NeuralIndex(index, settings=settings, engine=engine)
    try:
        searcher = HybridSearcher(
            idx.dialect,
            idx.name,
            dense=dense,
            sparse=sparse,
            reranker=reranker,
            rerank=settings.rerank,
            profile=profile,
        )
        return searcher.search(request)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    finally:
        idx.close()


def api_search(
    url: str,
    index: str,
    engine: EngineKind | None,
    request: SearchRequest,
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
) -> SearchResponse:
    """``request`` sent to ``POST {url}/v1/search`` of a running ``es-neural serve``.

    Every failure (unreachable, an error answer, an answer that is not a search response) is a
    :class:`typer.Exit` after a message that says what happened.
    """
    import httpx

    body: dict[str, Any] = {"index": index, **request.model_dump(mode="json", exclude_unset=True)}
    if engine is not None:
        body["engine"] = engine.value
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/v1/search"
    try:
        answer = httpx.post(endpoint, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise fail(escape(f"cannot reach the API at {url}: {exc}")) from None
    if answer.status_code != 200:
        raise fail(escape(f"the API at {url} answered {answer.status_code}: {_api_error(answer)}"))
    try:
        return SearchResponse.model_validate_json(answer.content)
    except ValidationError:
        raise fail(escape(f"{endpoint} did not answer with a search response")) from None


def _api_error(answer: Any) -> str:
    """``type: message`` of the API's error body, else the start of the body."""
    try:
        error = answer.json()["error"]
        text = f"{error['type']}: {error['message']}"
        details = error.get("details")
        if details:
            text += " " + json.dumps(details)[:300]
        return str(text)
    except (ValueError, KeyError, TypeError):
        return str(answer.text[:200]) or "(empty body)"


# ----- printing -----


def score_formula(response: SearchResponse, fusion: FusionConfig) -> list[str]:
    """How the final ``score`` of the response's hits was computed, in two lines; a third says
    how the order was diversified (MMR) when it was."""
    info = response.rerank
    if info.applied:
        head = f"the {info.candidates} reranked"
        if info.interpolation is None:
            final = f"score = rerank score for {head}; fused score below them"
        else:
            a = info.interpolation
            final = (
                f"score = {a:g} * minmax(rerank) + {1 - a:g} * minmax(fused) over {head} "
                "(min-max over them); fused score below them"
            )
    else:
        final = "score = fused score (no rerank)"
    if fusion.method == "rrf":
        fused = f"fused = sum over legs of weight / ({fusion.k:g} + leg rank)  (RRF)"
    else:
        fused = f"fused = sum over legs of weight * {fusion.normalization}(leg score)  (linear)"
    lines = [final, fused + "; each leg's +term is shown"]
    mmr = response.diversify
    if mmr.applied and mmr.lambda_ is not None:
        lam = mmr.lambda_
        lines.append(
            f"order of the top {mmr.window}: MMR, each position takes the highest "
            f"{lam:g} * rel - {1 - lam:g} * max cos(hit, hits above) (rel = minmax(score) over "
            "them); score unchanged"
        )
    return lines


def print_response(
    response: SearchResponse, *, explain: bool, request: SearchRequest | None = None
) -> None:
    """The hits (rank, id, score, title when it is not the id, text) and a timing line; with
    ``explain``, the score formula once and every stage's own rank and score per hit.
    ``request`` (default: the defaults) names the fusion and the legs that ran."""
    fusion = request.fusion if request is not None else FusionConfig()
    legs = {n for n, leg in request.legs().items() if leg.enabled} if request else set(LEGS)
    if explain and response.hits and response.hits[0].explain is not None:
        for line in score_formula(response, fusion):
            _out.print(f"[dim]{escape(line)}[/dim]", highlight=False)
    for hit in response.hits:
        title = str(hit.source.get("title") or "").replace("\n", " ")
        name = f"{hit.id}  score={hit.score:.4f}"
        if title and title != hit.id:
            name += f"  {title[:80]}"
        _out.print(f"[bold]{hit.rank:>3}.[/bold] {escape(name)}", highlight=False)
        text = str(hit.source.get("text") or "").replace("\n", " ")[:160]
        if text:
            _out.print(f"     [dim]{escape(text)}[/dim]", highlight=False)
        if explain and hit.explain is not None:
            for line in _explain_lines(hit.explain, legs, linear=fusion.method == "linear"):
                _out.print("     " + escape(line), highlight=False)
    t = response.timings
    rerank = "applied" if response.rerank.applied else response.rerank.reason
    if rerank == NO_RERANKER_REASON:
        rerank = "off (no reranker configured; --rerank uses the embedded one)"
    mmr = response.diversify
    diversified = ""
    if mmr.applied:
        diversified = f"; mmr: top {mmr.window} diversified (lambda {mmr.lambda_:g})"
        if mmr.note:
            diversified += f", {mmr.note}"
    elif request is not None and request.diversify.enabled:
        diversified = f"; mmr: {mmr.reason}"
    mmr_ms = f"mmr {t.diversify_ms:.1f} ms, " if t.diversify_ms else ""
    _out.print(
        f"[dim]{len(response.hits)} of {response.window_total} in window; "
        f"encode {t.encode_ms:.1f} ms, engine {t.engine_ms:.1f} ms (took {t.engine_took_ms:.0f}), "
        f"rerank {t.rerank_ms:.1f} ms, {mmr_ms}total {t.total_ms:.1f} ms; "
        f"rerank: {escape(str(rerank))}{escape(diversified)}[/dim]",
        highlight=False,
    )
    for warning in response.warnings:
        _err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def _explain_lines(e: HitExplain, legs: set[str], *, linear: bool) -> list[str]:
    """A hit's stages, each with its own rank: the legs that ran (``-``: the hit is not in that
    leg's list), then fusion, rerank and leaf, and the diversification (MMR) on a line of its
    own: the rank before it, the relevance, the closest hit above and the MMR score."""
    parts = []
    for leg, info in e.legs.items():
        if leg not in legs:
            continue
        if info is None:
            parts.append(f"{leg} -")
            continue
        norm = f" norm={info.normalized:.4f}" if linear else ""
        parts.append(f"{leg} #{info.rank} raw={info.score:.4f}{norm} +{info.contribution:.4f}")
    stages = [f"fused #{e.fused_rank} {e.fused_score:.4f} ({e.fusion})"]
    if e.rerank_score is not None:
        stages.append(f"rerank #{e.rerank_rank} {e.rerank_score:.4f}")
    if e.matched_leaf:
        stages.append(f"leaf {e.matched_leaf}")
    lines = [" | ".join(parts), " | ".join(stages)]
    if e.mmr is not None:
        m = e.mmr
        closest = f" to {m.similar_to}" if m.similar_to is not None else ""
        lines.append(
            f"mmr from #{m.rank_before} rel={m.relevance:.4f} "
            f"max cos={m.max_similarity:.4f}{closest} -> mmr={m.mmr_score:.4f}"
        )
    return lines


# ----- the command -----


def _weights(values: list[str] | None) -> dict[str, float]:
    """``--weight`` values (``leg=w``, repeated or comma-separated) as ``{leg: w}``."""
    weights: dict[str, float] = {}
    for value in values or ():
        for item in value.split(","):
            if not item.strip():
                continue
            leg, eq, number = item.partition("=")
            leg = leg.strip()
            if not eq or leg not in LEGS:
                raise fail(f"--weight {item.strip()!r}: write leg=weight, leg one of {LEGS}")
            try:
                weights[leg] = float(number)
            except ValueError:
                raise fail(f"--weight {item.strip()!r}: {number.strip()!r} is no number") from None
    return weights


def build_request(
    query: str,
    *,
    size: int = 10,
    legs: str = ",".join(LEGS),
    fusion: FusionChoice = FusionChoice.LINEAR,
    weights: list[str] | None = None,
    normalization: NormalizationChoice | None = None,
    rrf_k: float | None = None,
    leg_k: int | None = None,
    rerank: bool | None = None,
    rerank_top_n: int | None = None,
    mmr: bool = False,
    mmr_lambda: float | None = None,
    mmr_window: int | None = None,
    filter_json: str | None = None,
    explain: bool = False,
) -> SearchRequest:
    """The request the command's options describe; a contradiction is a :class:`typer.Exit`."""
    chosen = {leg.strip() for leg in legs.split(",") if leg.strip()}
    unknown = chosen - set(LEGS)
    if unknown:
        raise fail(f"unknown leg(s) {sorted(unknown)}; use bm25, dense, sparse")
    weight = _weights(weights)
    if off := sorted(set(weight) - chosen):
        raise fail(f"--weight for {off}: not in --legs")
    if normalization is not None and fusion is not FusionChoice.LINEAR:
        raise fail("--normalization applies to --fusion linear")
    if rrf_k is not None and fusion is not FusionChoice.RRF:
        raise fail("--rrf-k applies to --fusion rrf (the default fusion is linear)")
    if rerank is False and rerank_top_n is not None:
        raise fail("--rerank-top-n with --no-rerank")
    try:
        filter_value = json.loads(filter_json) if filter_json else None
    except json.JSONDecodeError as exc:
        raise fail(f"--filter is not JSON: {exc}") from None
    fusion_config: dict[str, Any] = {"method": fusion.value}
    if normalization is not None:
        fusion_config["normalization"] = normalization.value
    if rrf_k is not None:
        fusion_config["k"] = rrf_k
    rerank_config: dict[str, Any] = {"enabled": rerank}
    if rerank_top_n is not None:
        rerank_config["top_n"] = rerank_top_n
    body: dict[str, Any] = {}
    if mmr or mmr_lambda is not None or mmr_window is not None:
        # left out when not asked for: a request that leaves it unset stays unset
        body["diversify"] = {"enabled": True}
        if mmr_lambda is not None:
            body["diversify"]["lambda"] = mmr_lambda
        if mmr_window is not None:
            body["diversify"]["window"] = mmr_window
    body |= {
        "query": query,
        "size": size,
        "filter": filter_value,
        "fusion": fusion_config,
        "rerank": rerank_config,
        "explain": explain,
    }
    for leg in LEGS:
        body[leg] = {"enabled": leg in chosen}
        if leg in weight:
            body[leg]["weight"] = weight[leg]
        if leg_k is not None:
            body[leg]["k"] = leg_k
    try:
        return SearchRequest.model_validate(body)
    except ValidationError as exc:
        raise fail(escape(f"invalid request: {exc}")) from None


def _cli_defaults(ctx: typer.Context) -> list[str]:
    """The request fields that ``--fusion`` and ``--legs`` set when left at their defaults.

    ``ctx`` is typer's context (typer runs on its own copy of click: ``click``'s current
    context is ``None`` inside a typer command), so the source is compared by name."""

    def default(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name == "DEFAULT"

    paths = []
    if default("fusion"):
        paths.append("fusion.method")
    if default("legs"):
        paths += [f"{leg}.enabled" for leg in LEGS]
    return paths


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Query text.")],
    index: IndexOption,
    engine: EngineOpt = None,
    size: Annotated[int, typer.Option("--size", "-n", min=1, max=100)] = 10,
    legs: Annotated[
        str, typer.Option("--legs", help="Comma-separated legs: bm25,dense,sparse.")
    ] = ",".join(LEGS),
    fusion: Annotated[
        FusionChoice,
        typer.Option("--fusion", help="How the legs are fused (linear: min-max, equal weights)."),
    ] = FusionChoice.LINEAR,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            metavar="LEG=W",
            help="A leg's fusion weight, leg=w (repeat, or comma-separate: bm25=1,dense=2); "
            "default 1.",
        ),
    ] = None,
    normalization: Annotated[
        NormalizationChoice | None,
        typer.Option("--normalization", help="With --fusion linear: per-leg score normalisation."),
    ] = None,
    rrf_k: Annotated[
        float | None,
        typer.Option("--rrf-k", min=0.001, help="With --fusion rrf: the constant k (default 60)."),
    ] = None,
    leg_k: Annotated[
        int | None,
        typer.Option("--leg-k", min=1, max=1000, help="Hits each leg brings to fusion (100)."),
    ] = None,
    filter_json: Annotated[
        str | None, typer.Option("--filter", help="Portable filter as JSON.")
    ] = None,
    rerank: Annotated[
        bool | None,
        typer.Option(
            "--rerank/--no-rerank",
            help="Rerank on (the configured reranker, else the embedded one) or off; default: "
            "on when ES_NEURAL_RERANK__MODEL is set.",
        ),
    ] = None,
    rerank_top_n: Annotated[
        int | None,
        typer.Option(
            "--rerank-top-n",
            min=1,
            max=1000,
            help="Fused hits reranked (default: ES_NEURAL_RERANK__TOP_N); implies --rerank.",
        ),
    ] = None,
    mmr: Annotated[
        bool,
        typer.Option(
            "--mmr",
            "--diversify",
            help="Diversify the top of the window (MMR over the documents' dense vectors): "
            "near-duplicates move down.",
        ),
    ] = False,
    mmr_lambda: Annotated[
        float | None,
        typer.Option(
            "--mmr-lambda",
            min=0.0,
            max=1.0,
            help="MMR weight of relevance against novelty: 1 keeps the order, 0 spreads the "
            "most (default 0.7); implies --mmr.",
        ),
    ] = None,
    mmr_window: Annotated[
        int | None,
        typer.Option(
            "--mmr-window",
            min=1,
            max=1000,
            help="Hits of the top of the window MMR reorders (default 50); implies --mmr.",
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Each stage's own rank and score, and the formula.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            envvar="ES_NEURAL_API_URL",
            help="URL of a running `es-neural serve` to send the search to (no model is "
            "loaded here), e.g. http://127.0.0.1:8000.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="ES_NEURAL_API_KEY",
            help="With --api: the API key (better from the environment).",
            show_envvar=True,
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            dir_okay=False,
            help="A recommended configuration (es-neural eval --recommend) whose fusion, legs "
            "and rerank are the defaults of this search (default: ES_NEURAL_PROFILE); "
            "options given here win.",
        ),
    ] = None,
) -> None:
    """Hybrid search: BM25 + kNN + SPLADE, fused, optionally reranked and diversified."""
    if rerank_top_n is not None and rerank is None:
        rerank = True
    request = build_request(
        query,
        size=size,
        legs=legs,
        fusion=fusion,
        weights=weights,
        normalization=normalization,
        rrf_k=rrf_k,
        leg_k=leg_k,
        rerank=rerank,
        rerank_top_n=rerank_top_n,
        mmr=mmr,
        mmr_lambda=mmr_lambda,
        mmr_window=mmr_window,
        filter_json=filter_json,
        explain=explain,
    )
    # --fusion and --legs left at their defaults are not given: a profile fills them.
    request = leave_unset(request, _cli_defaults(ctx))
    if api:
        if profile is not None:
            raise fail(
                "--profile applies to a search run here; the API applies its own "
                "(ES_NEURAL_PROFILE where it runs)"
            )
        response = api_search(api, index, engine, request, api_key=api_key)
        if rerank and response.rerank.reason == NO_RERANKER_REASON:
            raise fail(
                escape(
                    f"--rerank: the API at {api} did not rerank ({response.rerank.reason}); "
                    "start it with ES_NEURAL_RERANK__MODEL set (e.g. embedded)"
                )
            )
    else:
        settings = settings_or_exit()
        try:
            chosen = load_profile(profile, settings)
        except EsNeuralError as exc:
            raise fail(escape(str(exc))) from None
        if chosen is not None:
            request = chosen.apply(request)  # printed below as it ran
        response = search_here(settings, index, engine, request, rerank=rerank, profile=chosen)
    if json_out:
        _out.print_json(response.model_dump_json())
    else:
        print_response(response, explain=explain, request=request)
