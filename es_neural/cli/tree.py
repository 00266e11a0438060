"""``es-neural tree build|train|assign|stats``: the routing tree's life cycle.

A tree is a folder (``tree.json`` + ``arrays.npz``). ``build`` clusters a corpus's embeddings,
``train`` learns the node centroids from (query, relevant document) pairs, ``assign`` settles
which leaves each document is stored in (its own leaf, the leaves its embedding routes to and,
with a query log, the leaves of the queries that retrieve it), ``stats`` describes a tree.

Leaves reach an index when documents are ingested with the tree (``NeuralIndex(...,
leaves=TreeLeafAssigner(tree))``); the index ``_meta`` then records the tree version and refuses
routers of another one. Changing the tree of a live index therefore means: re-train or re-assign
under a new ``--version``, ingest into a new index version, and swap the alias (blue/green); the
old version keeps serving until the swap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from es_neural.cli.data import TextFieldsAlias, fail, settings_or_exit
from es_neural.errors import EsNeuralError
from es_neural.settings import EngineKind, Settings

if TYPE_CHECKING:
    from es_neural.encoders.base import DenseEncoder, FloatMatrix
    from es_neural.tree.model import TreeModel

__all__ = ["tree_app"]

tree_app = typer.Typer(
    help=(
        "Neural tree routing (JTR): build a tree over document embeddings, train its centroids "
        "on query-document pairs, assign documents to leaves, show statistics."
    ),
    no_args_is_help=True,
)

_out = Console()
_err = Console(stderr=True)

TreeDir = Annotated[Path, typer.Argument(help="Tree folder (tree.json + arrays.npz).")]
FieldsOpt = Annotated[
    str, typer.Option("--text-fields", help="Comma-separated text fields (as at ingest).")
]
IdFieldOpt = Annotated[
    str | None, typer.Option("--id-field", help="Field holding the document id.")
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        help="Save under this new tree version (needed once an index holds the old one).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write here instead of over the input tree."),
]
#: ``--out``, the old spelling of ``--output`` (hidden; scripts keep working).
OutAlias = Annotated[Path | None, typer.Option("--out", hidden=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fields(fields: str, alias: str | None = None) -> tuple[str, ...]:
    """``--text-fields`` (or its old spelling ``--fields``) as a tuple of names."""
    names = tuple(f.strip() for f in (alias or fields).split(",") if f.strip())
    if not names:
        raise fail("--text-fields needs at least one field name")
    return names


def _dense(settings: Settings) -> DenseEncoder:
    """The configured dense encoder behind the embedding cache (a corpus is encoded once)."""
    from es_neural.encoders.registry import Encoders

    return Encoders.from_settings(settings, sparse=False, cached=True).dense


def _encode_corpus(
    dense: DenseEncoder, path: Path, fields: tuple[str, ...], id_field: str | None
) -> tuple[tuple[str, ...], FloatMatrix]:
    from es_neural.tree.corpus import read_corpus

    corpus = read_corpus(path, text_fields=fields, id_field=id_field)
    _err.print(f"encoding {len(corpus)} documents of {path} ...", highlight=False)
    return corpus.ids, dense.encode_documents(list(corpus.texts))


def _load(path: Path) -> TreeModel:
    from es_neural.tree.artifact import load_tree

    return load_tree(path)


def _save(model: TreeModel, path: Path) -> None:
    from es_neural.tree.artifact import save_tree

    save_tree(model, path)
    _err.print(f"saved tree {model.version!r} to {path}", highlight=False)


def _print(data: dict[str, Any], *, title: str, json_out: bool) -> None:
    if json_out:
        _out.print_json(json.dumps(data, default=str))
        return
    table = Table(title=title, show_header=False)
    for key, value in data.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        table.add_row(key, text)
    _out.print(table)


@tree_app.command("build")
def build(
    corpus: Annotated[Path, typer.Argument(help="JSONL corpus.", exists=True, dir_okay=False)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Tree folder to write (required).")
    ] = None,
    version: Annotated[str, typer.Option("--version", help="Tree version (prefix of ids).")] = "v1",
    fields: FieldsOpt = "title,text",
    fields_alias: TextFieldsAlias = None,
    out_alias: OutAlias = None,
    id_field: IdFieldOpt = None,
    branching: Annotated[int, typer.Option("--branching", min=2, max=1000)] = 8,
    max_leaf_size: Annotated[int, typer.Option("--max-leaf-size", min=1)] = 128,
    max_depth: Annotated[int, typer.Option("--max-depth", min=1, max=64)] = 12,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    scale: Annotated[float, typer.Option("--scale", help="Router softmax scale.")] = 20.0,
    json_out: JsonOpt = False,
) -> None:
    """Hierarchical k-means over the corpus's dense embeddings (one leaf per document)."""
    from es_neural.tree.build import BuildConfig, build_tree

    out = output or out_alias
    if out is None:
        raise fail("--output (-o) is required: the tree folder to write", code=2)
    settings = settings_or_exit()
    try:
        config = BuildConfig(
            branching=branching,
            max_leaf_size=max_leaf_size,
            max_depth=max_depth,
            seed=seed,
            scale=scale,
        )
        dense = _dense(settings)
        ids, vectors = _encode_corpus(dense, corpus, _fields(fields, fields_alias), id_field)
        model = build_tree(
            vectors, version=version, doc_ids=ids, config=config, progress=True
        ).with_encoder(dense.fingerprint)
        _save(model, out)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    _print(model.stats(), title=f"tree {model.version}", json_out=json_out)


@tree_app.command("train")
def train(
    tree: TreeDir,
    queries: Annotated[Path, typer.Option("--queries", help="BEIR queries.jsonl.", exists=True)],
    qrels: Annotated[Path, typer.Option("--qrels", help="BEIR qrels TSV (train split).")],
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="JSONL corpus; needed for --self-weight > 0.", exists=True),
    ] = None,
    fields: FieldsOpt = "title,text",
    fields_alias: TextFieldsAlias = None,
    id_field: IdFieldOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", min=0)] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 256,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0)] = 0.01,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 0.0,
    self_weight: Annotated[
        float, typer.Option("--self-weight", min=0.0, help="Documents as their own queries.")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, ...")] = None,
    version: VersionOpt = None,
    output: OutOpt = None,
    out_alias: OutAlias = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the node centroids on (query, relevant document) pairs; the encoder stays frozen."""
    import numpy as np

    from es_neural.tree.corpus import read_qrels, read_queries
    from es_neural.tree.train import TrainConfig, train_tree

    settings = settings_or_exit()
    try:
        model = _load(tree)
        dense = _dense(settings)
        model.check_encoder(dense.fingerprint)
        texts = read_queries(queries)
        judged = read_qrels(qrels)
        query_ids = [q for q in judged if q in texts]
        rows = {q: i for i, q in enumerate(query_ids)}
        pairs = [
            (rows[q], doc)
            for q in query_ids
            for doc, grade in sorted(judged[q].items())
            if grade > 0
        ]
        if not pairs:
            raise fail(f"no positive pair in {qrels} names a query of {queries}")
        _err.print(f"encoding {len(query_ids)} queries ...", highlight=False)
        vectors = dense.encode_queries([texts[q] for q in query_ids])
        doc_vectors = None
        if self_weight > 0:
            if corpus is None:
                raise fail("--self-weight needs --corpus")
            ids, encoded = _encode_corpus(dense, corpus, _fields(fields, fields_alias), id_field)
            position = {doc_id: i for i, doc_id in enumerate(ids)}
            missing = [d for d in model.doc_ids if d not in position]
            if missing:
                raise fail(f"{len(missing)} documents of the tree are not in {corpus}")
            doc_vectors = encoded[np.asarray([position[d] for d in model.doc_ids])]
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            self_weight=self_weight,
            seed=seed,
            device=device,
        )
        trained, report = train_tree(model, vectors, pairs, doc_vectors=doc_vectors, config=config)
        if version is not None:
            trained = trained.with_version(version)
        _save(trained, output or out_alias or tree)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    data = report.to_dict()
    losses = data.pop("epoch_losses")
    data["loss"] = f"{losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "-"
    data["version"] = trained.version
    _print(data, title="tree training", json_out=json_out)


@tree_app.command("assign")
def assign(
    tree: TreeDir,
    corpus: Annotated[Path, typer.Option("--corpus", help="JSONL corpus.", exists=True)],
    fields: FieldsOpt = "title,text",
    fields_alias: TextFieldsAlias = None,
    id_field: IdFieldOpt = None,
    threshold: Annotated[
        float,
        typer.Option("--threshold", min=0.0, max=1.0, help="Extra routed leaves up to this mass."),
    ] = 0.5,
    max_leaves: Annotated[int, typer.Option("--max-leaves", min=1, max=16)] = 3,
    query_log: Annotated[
        Path | None,
        typer.Option("--query-log", help="Queries (JSONL with 'text') for co-occurrence leaves."),
    ] = None,
    index: Annotated[
        str | None, typer.Option("--index", "-i", help="Index the teacher retrieval searches.")
    ] = None,
    engine: Annotated[EngineKind | None, typer.Option("--engine", "-e")] = None,
    teacher_k: Annotated[int, typer.Option("--teacher-k", min=1, max=100)] = 10,
    leaves_per_query: Annotated[int, typer.Option("--leaves-per-query", min=1)] = 2,
    per_document: Annotated[int, typer.Option("--per-document", min=0)] = 2,
    use_sparse: Annotated[
        bool, typer.Option("--sparse/--no-sparse", help="SPLADE leg in the teacher.")
    ] = False,
    version: VersionOpt = None,
    output: OutOpt = None,
    out_alias: OutAlias = None,
    json_out: JsonOpt = False,
) -> None:
    """Settle each document's leaves (1 to --max-leaves) and save them in the tree.

    Documents keep their build leaf, gain the leaves their embedding routes to and, with
    --query-log and --index, the leaves of logged queries whose hybrid retrieval (the teacher)
    returns them. New documents are routed; documents missing from the corpus are dropped. Ingest
    with the tree to write the leaves; a tree an index already holds needs a new --version (and a
    new index version behind the alias).
    """
    import numpy as np

    from es_neural.tree.optimize import add_routed_leaves
    from es_neural.tree.route import place_documents

    if (query_log is None) != (index is None):
        raise fail("--query-log and --index go together")
    settings = settings_or_exit()
    try:
        model = _load(tree)
        dense = _dense(settings)
        model.check_encoder(dense.fingerprint)
        ids, vectors = _encode_corpus(dense, corpus, _fields(fields, fields_alias), id_field)
        placed = place_documents(model, ids, vectors)
        assigned, routed_info = add_routed_leaves(
            placed.model, vectors, threshold=threshold, max_leaves=max_leaves
        )
        info: dict[str, Any] = {
            "documents": len(ids),
            "new documents (routed)": placed.routed,
            "dropped documents": placed.dropped,
            "routed leaves added": routed_info["added"],
        }
        if query_log is not None and index is not None:
            assigned, co_info = _cooccurrence(
                assigned,
                dense,
                settings,
                query_log=query_log,
                index=index,
                engine=engine,
                teacher_k=teacher_k,
                leaves_per_query=leaves_per_query,
                per_document=per_document,
                max_leaves=max_leaves,
                use_sparse=use_sparse,
            )
            info.update({f"query log: {k}": v for k, v in co_info.items()})
        if version is not None:
            assigned = assigned.with_version(version)
        _save(assigned, output or out_alias or tree)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    per_doc = np.diff(assigned.doc_leaf_ptr)
    info["leaves per document (mean)"] = round(float(per_doc.mean()), 3)
    info["version"] = assigned.version
    _print(info, title="leaf assignment", json_out=json_out)


def _cooccurrence(
    model: TreeModel,
    dense: DenseEncoder,
    settings: Settings,
    *,
    query_log: Path,
    index: str,
    engine: EngineKind | None,
    teacher_k: int,
    leaves_per_query: int,
    per_document: int,
    max_leaves: int,
    use_sparse: bool,
) -> tuple[TreeModel, dict[str, Any]]:
    """Co-occurrence leaves with the project's hybrid retrieval on ``index`` as the teacher."""
    from tqdm.auto import tqdm

    from es_neural.neural_index import NeuralIndex
    from es_neural.search.models import RerankConfig, SearchRequest, SparseLeg
    from es_neural.tree.corpus import read_queries
    from es_neural.tree.optimize import add_cooccurrence_leaves, query_log_leaves

    texts = list(read_queries(query_log).values())
    vectors = dense.encode_queries(texts)
    leaves = query_log_leaves(model, vectors, leaves_per_query=leaves_per_query)
    idx = NeuralIndex(index, settings=settings, engine=engine, dense=dense, use_sparse=use_sparse)
    retrieved: list[list[int]] = []
    try:
        for text in tqdm(texts, desc="teacher retrieval", unit="query"):
            request = SearchRequest(
                query=text,
                size=teacher_k,
                window=teacher_k,
                sparse=SparseLeg(enabled=use_sparse),
                rerank=RerankConfig(enabled=False),
            )
            hits = idx.search(request).hits
            retrieved.append([row for h in hits if (row := model.doc_row(h.id)) is not None])
    finally:
        idx.close()
    extended, info = add_cooccurrence_leaves(
        model, leaves, retrieved, per_document=per_document, max_leaves=max_leaves
    )
    return extended, {"queries": len(texts), **info}


@tree_app.command("stats")
def stats(tree: TreeDir, json_out: JsonOpt = False) -> None:
    """Structure, leaf sizes and hyper-parameters of a saved tree."""
    try:
        model = _load(tree)
    except EsNeuralError as exc:
        raise fail(escape(str(exc))) from None
    _print(model.stats(), title=f"tree {model.version}", json_out=json_out)
