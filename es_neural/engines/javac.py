"""Running the JDK's and the engines' own tools, and compiling a small module into an install.

Managed installs sometimes lack a module that es-neural needs (the integ-test distributions
have no ``analysis-common``, for one). :func:`build_module` compiles one Java source file with
the JDK's ``javac`` against the install's server jars and packs it, with its plugin descriptor,
as ``modules/<name>/`` of that install: nothing is downloaded. :func:`run_tool` runs a JDK or
engine tool and turns a failure into :class:`~es_neural.errors.EngineSetupError` with the last
lines of its output; :func:`java_tool_env` is the environment such a tool runs in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from es_neural.errors import EngineSetupError

__all__ = ["build_module", "java_tool_env", "run_tool"]

_TOOL_TIMEOUT_S = 300.0


def java_tool_env(java_home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without ``JAVA_HOME``/``JAVA_TOOL_OPTIONS``, plus ``extra``
    (e.g. ``ES_JAVA_HOME`` or ``OPENSEARCH_JAVA_HOME``, and secrets for a tool to read)."""
    env = {k: v for k, v in os.environ.items() if k not in {"JAVA_HOME", "JAVA_TOOL_OPTIONS"}}
    env.update(extra)
    return env


def run_tool(
    command: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a JDK or engine tool; its stdout on success, else :class:`EngineSetupError` with the
    last lines of its output (Java stack frames left out). Secrets go through ``stdin`` or
    ``env``, never ``command``."""
    try:
        done = subprocess.run(
            list(command),
            input=stdin,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL if stdin is None else None,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineSetupError(f"{what} could not run: {exc}") from exc
    if done.returncode != 0:
        lines = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and not line.lstrip().startswith("at ")
        ]
        raise EngineSetupError(f"{what} failed (exit {done.returncode}): " + "\n".join(lines[-10:]))
    return done.stdout


def build_module(
    *,
    java_home: Path,
    install_dir: Path,
    source: Path,
    module: Path,
    jar_name: str,
    descriptor: str,
    extra_jars: Sequence[Path] = (),
) -> Path:
    """Compile ``source`` with the JDK's ``javac`` against the install's server jars into
    ``module/<jar_name>`` (with ``extra_jars`` and the plugin ``descriptor``): a module of the
    install the distribution lacks."""
    javac = java_home / "bin" / "javac"
    if not javac.is_file():
        raise EngineSetupError(f"{java_home} has no javac: a JDK (not a JRE) is needed")
    classpath = os.pathsep.join(str(jar) for jar in sorted((install_dir / "lib").glob("*.jar")))
    with tempfile.TemporaryDirectory() as tmp:
        classes, staged = Path(tmp) / "classes", Path(tmp) / module.name
        staged.mkdir()
        what = f"building module {module.name}"
        run_tool(
            [str(javac), "--release", "21", "-cp", classpath, "-d", str(classes), str(source)],
            what=what,
        )
        jar = [str(java_home / "bin" / "jar"), "--create", "--file", str(staged / jar_name)]
        run_tool([*jar, "-C", str(classes), "."], what=what)
        for extra in extra_jars:
            shutil.copy2(extra, staged / extra.name)
        (staged / "plugin-descriptor.properties").write_text(descriptor)
        shutil.copytree(staged, module)
    return module
