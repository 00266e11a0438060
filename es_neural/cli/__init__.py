"""The ``es-neural`` command line. Each command group lives in its own module."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperOption

from es_neural.cli.data import ingest
from es_neural.cli.demo import demo
from es_neural.cli.engines import engines_app
from es_neural.cli.eval import eval_command, train_app
from es_neural.cli.migrate import migrate_app
from es_neural.cli.search import search
from es_neural.cli.serve import serve
from es_neural.cli.tree import tree_app


def _flags_take_no_value() -> None:
    """Help shows no value type (``<bool>``) after a flag: ``--json``, ``--rerank/--no-rerank``
    and ``--help`` take none. Typer 0.2x's rich help prints the type of every option."""
    display = getattr(TyperOption, "display_type_rich", None)
    if display is None or getattr(display, "_es_neural", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else display(self, ctx)

    display_type_rich._es_neural = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign,assignment]


_flags_take_no_value()
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
