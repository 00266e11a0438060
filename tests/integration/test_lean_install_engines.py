"""A lean install searches and serves (issue 17), once per engine.

An index is filled with the embedded models (torch, in this process). Then, in subprocesses
where torch, transformers and sentence-transformers are uninstalled in effect (as in
tests/unit/test_lean_install.py), ``es-neural search`` and ``es-neural serve`` run the hybrid
search (BM25 + dense + SPLADE legs) with the torch-free query encoders, and find what the torch
query encoders find here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from es_neural.encoders.registry import get_dense_encoder, get_sparse_encoder
from es_neural.neural_index import NeuralIndex
from es_neural.search.service import HybridSearcher
from es_neural.settings import Settings

pytestmark = [pytest.mark.engine, pytest.mark.models]

REPO = Path(__file__).resolve().parents[2]
QUERY = "vitamin d and bone density in older women"
DOCS = [
    {"id": "vitd", "title": "Vitamin D", "text": "Vitamin D supplements and bone mineral density."},
    {"id": "calcium", "title": "Calcium", "text": "Calcium intake in postmenopausal women."},
    {"id": "fracture", "title": "Fractures", "text": "Hip fractures in elderly patients."},
    {"id": "coffee", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
    {"id": "mars", "title": "Mars", "text": "Mars is the fourth planet from the Sun."},
    {"id": "python", "title": "Python", "text": "Python is a programming language."},
]
LEAN = textwrap.dedent(
    """
    import sys
    for name in ("torch", "transformers", "sentence_transformers"):
        sys.modules[name] = None
    from es_neural.cli import app
    """
)


def _lean_command(args: Sequence[str]) -> list[str]:
    code = LEAN + f"app({list(args)!r}, prog_name='es-neural')\n"
    return [sys.executable, "-c", code]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torch_query_ids(idx: NeuralIndex, settings: Settings) -> list[str]:
    """The hybrid search here, its queries encoded by torch."""
    dense = get_dense_encoder(settings.dense.model_copy(update={"query_runtime": "torch"}))
    sparse = get_sparse_encoder(settings.sparse.model_copy(update={"query_runtime": "torch"}))
    searcher = HybridSearcher(idx.dialect, idx.name, dense=dense, sparse=sparse)
    response = searcher.search(QUERY, size=len(DOCS))
    assert set(response.leg_totals) >= {"bm25", "dense", "sparse"}
    return [hit.id for hit in response.hits]


def test_a_lean_install_searches_and_serves_the_hybrid_legs(
    embedded_index: Callable[[Sequence[Mapping[str, Any]], int], NeuralIndex],
    engine_settings: Settings,
    index_name: str,
) -> None:
    idx = embedded_index(DOCS, 8)
    expected = _torch_query_ids(idx, engine_settings)
    assert expected[0] == "vitd"
    engine = engine_settings.engine.value
    env = {**os.environ, "COLUMNS": "200"}

    args = ["search", QUERY, "-i", index_name, "-e", engine, "--size", str(len(DOCS)), "--json"]
    found = subprocess.run(
        _lean_command(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert found.returncode == 0, found.stderr + found.stdout
    response = json.loads(found.stdout[found.stdout.index("{") :])
    assert [hit["id"] for hit in response["hits"]] == expected
    assert set(response["leg_totals"]) >= {"bm25", "dense", "sparse"}

    port = _free_port()
    serve = ["serve", "-p", str(port), "-e", engine, "-i", index_name, "--log-level", "warning"]
    server = subprocess.Popen(
        _lean_command(serve),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = {"index": index_name, "query": QUERY, "size": len(DOCS)}
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/search", json=body, timeout=60)
                if answer.status_code != 503:  # 503: still loading its models
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the lean API did not start"
            time.sleep(0.5)
        assert answer.status_code == 200, answer.text
        assert [hit["id"] for hit in answer.json()["hits"]] == expected
    finally:
        server.terminate()
        server.wait(timeout=30)
