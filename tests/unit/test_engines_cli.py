"""``es-neural engines ... --instance``: a separate set of nodes, named safely."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from es_neural.cli.engines import engines_app


def test_a_bad_instance_name_is_refused_with_the_rule(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        engines_app,
        ["status", "--engine", "elasticsearch", "--instance", "../etc"],
        env={"ES_NEURAL_HOME": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "instance must match" in result.output
    assert not (tmp_path / "run").exists()


def test_status_of_an_instance_reads_its_own_run_folder_and_port(tmp_path: Path) -> None:
    # the URL lists every node; node 0's port comes from the first. Nothing listens on port 9
    # (discard) on loopback: node 0 is down, and the command says so
    result = CliRunner().invoke(
        engines_app,
        ["status", "--engine", "elasticsearch", "--instance", "cluster3"],
        env={
            "ES_NEURAL_HOME": str(tmp_path),
            "ES_NEURAL_ELASTICSEARCH__URL": "http://127.0.0.1:9,http://127.0.0.1:19",
        },
    )
    assert result.exit_code == 1
    assert "http://127.0.0.1:9 " in result.output and "down" in result.output
