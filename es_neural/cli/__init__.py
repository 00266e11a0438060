"""The ``es-neural`` command line. Each command group lives in its own module."""

from __future__ import annotations

import typer

from es_neural.cli.data import ingest, search
from es_neural.cli.demo import demo
from es_neural.cli.engines import engines_app
from es_neural.cli.eval import eval_command, train_app
from es_neural.cli.migrate import migrate_app
from es_neural.cli.serve import serve
from es_neural.cli.tree import tree_app

app = typer.Typer(
    name="es-neural",
    help="Neural retrieval for existing Elasticsearch and OpenSearch clusters.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(engines_app, name="engines")
app.command("ingest")(ingest)
app.command("search")(search)
app.command("demo")(demo)
app.command("serve")(serve)
app.command("eval")(eval_command)
app.add_typer(train_app, name="train")
app.add_typer(tree_app, name="tree")
app.add_typer(migrate_app, name="migrate")

__all__ = ["app"]
