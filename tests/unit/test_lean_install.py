"""A lean install (issue 17): without torch, transformers and sentence-transformers, es-neural
encodes queries on the torch-free query path, and every feature that needs torch says which
extra to install instead of raising an ImportError.

The subprocesses below make the three packages uninstalled in effect (``sys.modules[name] =
None``: ``import`` fails and ``importlib.util.find_spec`` answers ``None``, as in a venv without
them). The real lean venv (``pip install es-neural``) is measured in the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[2]


#: Run first in a subprocess: torch, transformers and sentence-transformers behave as not
#: installed (``import`` fails, ``importlib.util.find_spec`` answers None), as in a lean venv.
LEAN = textwrap.dedent(
    """
    import sys
    for name in ("torch", "transformers", "sentence_transformers"):
        sys.modules[name] = None
    """
)


def _lean(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LEAN + textwrap.dedent(code)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_lean_install_encodes_queries_and_names_the_extra_for_the_rest(
    tiny_model_dir: Path,
) -> None:
    result = _lean(
        f"""
        import json
        from es_neural.encoders.registry import Encoders
        from es_neural.errors import ConfigurationError
        from es_neural.settings import Settings

        folder = {str(tiny_model_dir)!r}
        settings = Settings().with_(dense={{"model": folder}}, sparse={{"model": folder}})
        encoders = Encoders.from_settings(settings)
        vector = encoders.dense.encode_queries(["python programming"])[0]
        terms = encoders.required_sparse.encode_queries(["python programming"])[0]
        errors = []
        for encode in (encoders.dense.encode_documents, encoders.required_sparse.encode_documents):
            try:
                encode(["a document"])
            except ConfigurationError as exc:
                errors.append(str(exc))
        from es_neural.search.rerank import CrossEncoderReranker
        try:
            CrossEncoderReranker(folder).load()
        except ConfigurationError as exc:
            errors.append(str(exc))
        print(json.dumps({{"dims": len(vector), "norm": float((vector ** 2).sum()),
                           "terms": len(terms), "errors": errors,
                           "torch": sys.modules.get("torch") is not None}}))
        """
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["dims"] == 32 and abs(out["norm"] - 1.0) < 1e-5 and out["terms"] > 0
    assert out["torch"] is False
    assert len(out["errors"]) == 3
    for message in out["errors"]:
        assert "pip install 'es-neural[torch]'" in message and "torch" in message


def test_a_lean_install_imports_the_cli_and_the_api() -> None:
    result = _lean(
        """
        import es_neural.cli, es_neural.api, es_neural.neural_index, es_neural.search.service
        from typer.testing import CliRunner
        out = CliRunner().invoke(es_neural.cli.app, ["search", "--help"])
        assert out.exit_code == 0, out.output
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


def test_commands_that_need_torch_say_so_on_a_lean_install(tmp_path: Path) -> None:
    data = shared_data("scifact")
    result = _lean(
        f"""
        import json
        from typer.testing import CliRunner
        from es_neural.cli import app

        data, out = {str(data)!r}, {str(tmp_path / "model")!r}
        answers = {{}}
        for args in (["eval", data], ["train", "dense", data, "-o", out],
                     ["train", "reranker", data, "-o", out]):
            found = CliRunner().invoke(app, args, env={{"COLUMNS": "200"}})
            answers[" ".join(args[:2])] = [found.exit_code, found.output,
                                           type(found.exception).__name__]
        print(json.dumps(answers))
        """
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(answers) == 3
    for command, (code, output, exception) in answers.items():
        assert code == 1 and exception == "SystemExit", (command, output)
        assert "pip install 'es-neural[torch]'" in output, (command, output)
        assert "Traceback" not in output, (command, output)


def test_a_lean_install_reranks_with_the_embedded_reranker() -> None:
    result = _lean(
        """
        import json
        from es_neural.search.rerank import CrossEncoderReranker, embedded_reranker_path

        reranker = CrossEncoderReranker(str(embedded_reranker_path()))
        scores = reranker.score(
            "coffee and heart disease",
            ["Coffee intake and the risk of coronary heart disease.", "The rules of chess."],
        )
        print(json.dumps({"scores": scores, "runtime": reranker.runtime,
                          "torch": sys.modules.get("torch") is not None}))
        """
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "onnxruntime" and out["torch"] is False
    assert out["scores"][0] > out["scores"][1]  # the relevant passage first
