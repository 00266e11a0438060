"""The ``english`` analyzer for managed installs that lack ``analysis-common``.

Users' clusters have the ``analysis-common`` module, which registers the language analyzers
(``english``, ...). The Elasticsearch integ-test distribution that ``es-neural engines up``
installs does not, so es-neural indices there would fall back to the ``standard`` analyzer and
their BM25 would be weaker than users' (no stemming). :func:`install_english_module` compiles
``java/EnglishAnalysisPlugin.java`` (Lucene's own ``EnglishAnalyzer``, from the
``lucene-analysis-common`` jar every distribution ships in ``lib/``) with the JDK's ``javac``
against the install's jars, into the module ``modules/es-neural-english-analysis/`` of the install:

* only where ``modules/analysis-common`` is absent (both would register ``english``; OpenSearch's
  integ-test distribution has it);
* once: the module records the hash of its source and engine version and is rebuilt only when
  they change; concurrent callers wait on a lock;
* atomically: built in a staging folder beside the installs, moved into ``modules/`` in one
  rename (a node never sees half a module);
* never fatal for ``up``: a failure is reported (the progress callback) and indices created on
  that engine fall back to ``standard`` (their creation probes the analyzer,
  :func:`es_neural.indices.resolve_text_analyzer`).

A node loads modules when it starts: nodes already running pick the module up at their next
restart (``es-neural engines down`` then ``up``).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from es_neural.engines.catalog import EngineRelease
from es_neural.engines.install import ServiceUser, chown_tree, file_lock, module_present
from es_neural.engines.javac import build_module
from es_neural.errors import EngineSetupError
from es_neural.settings import EngineKind

__all__ = [
    "ANALYSIS_COMMON",
    "ENGLISH_MODULE",
    "EnglishModule",
    "ModuleState",
    "english_module_descriptor",
    "english_plugin_source",
    "ensure_english_module",
    "install_english_module",
    "needs_english_module",
]

#: Our module's folder and plugin name (``_nodes`` lists it among the node's modules).
ENGLISH_MODULE = "es-neural-english-analysis"
#: The distributions' own module that registers ``english`` (with the other language analyzers).
ANALYSIS_COMMON = "analysis-common"
#: Analyzers the module provides (what migration planning may rely on when it is loaded).
PROVIDED_ANALYZERS = frozenset({"english"})

_SOURCE = Path(__file__).with_name("java") / "EnglishAnalysisPlugin.java"
_CLASS = "org.esneural.englishanalysis.EnglishAnalysisPlugin"
_STAMP = ".es-neural-build"
_PACKAGE_PREFIX = {
    EngineKind.ELASTICSEARCH: "org.elasticsearch.",
    EngineKind.OPENSEARCH: "org.opensearch.",
}

Progress = Callable[[str], None]


class ModuleState(StrEnum):
    #: Built now.
    BUILT = "built"
    #: Built earlier from the same source for the same version.
    PRESENT = "present"
    #: The install has ``analysis-common``: ``english`` is there already.
    NOT_NEEDED = "not-needed"
    #: Could not be built (``reason``): the engine has no ``english`` analyzer.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EnglishModule:
    """What :func:`install_english_module` found or did."""

    state: ModuleState
    path: Path | None = None
    reason: str = ""

    @property
    def english_available(self) -> bool:
        return self.state is not ModuleState.FAILED


# -- pure ------------------------------------------------------------------------------------


def english_plugin_source(engine: EngineKind, source: str | None = None) -> str:
    """The plugin's Java source for ``engine`` (written for Elasticsearch; OpenSearch's classes
    have the same names under ``org.opensearch.``)."""
    text = source if source is not None else _SOURCE.read_text(encoding="utf-8")
    kind = EngineKind(engine)
    return text.replace(_PACKAGE_PREFIX[EngineKind.ELASTICSEARCH], _PACKAGE_PREFIX[kind])


def english_module_descriptor(release: EngineRelease) -> str:
    """``plugin-descriptor.properties`` of the module for ``release``."""
    lines = {
        "description": "The english analyzer (Lucene's EnglishAnalyzer), for distributions "
        "without analysis-common (es-neural)",
        "version": release.version,
        "name": ENGLISH_MODULE,
        "classname": _CLASS,
        "java.version": "21",
        f"{release.engine.value}.version": release.version,
    }
    if release.engine is EngineKind.OPENSEARCH:
        lines.update({"custom.foldername": "", "extended.plugins": ""})
        lines["has.native.controller"] = "false"
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _stamp(release: EngineRelease, source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return f"{release.name} {digest}\n"


# -- install ---------------------------------------------------------------------------------


def needs_english_module(install_dir: Path) -> bool:
    """Whether the install lacks ``analysis-common`` (hence an ``english`` analyzer)."""
    modules = install_dir / "modules"
    return not (modules / ANALYSIS_COMMON).is_dir()


def ensure_english_module(
    install_dir: Path,
    release: EngineRelease,
    java_home: Path,
    *,
    owner: ServiceUser | None = None,
    progress: Progress | None = None,
) -> EnglishModule:
    """The module in ``install_dir/modules`` (built unless there and current, or not needed).

    Raises :class:`EngineSetupError` when it cannot be built (no ``javac``, a compile error)."""
    say = progress if progress is not None else (lambda _msg: None)
    target = install_dir / "modules" / ENGLISH_MODULE
    if not needs_english_module(install_dir):
        return EnglishModule(ModuleState.NOT_NEEDED, reason=f"{ANALYSIS_COMMON} is installed")
    source = english_plugin_source(release.engine)
    stamp = _stamp(release, source)

    def current() -> bool:
        marker = target / _STAMP
        return module_present(install_dir / "modules", ENGLISH_MODULE) and (
            marker.is_file() and marker.read_text() == stamp
        )

    if current():
        return EnglishModule(ModuleState.PRESENT, target)
    locks = install_dir.parent.parent / "locks"
    with file_lock(locks / f"english-module-{release.name}.lock", say):
        if current():
            return EnglishModule(ModuleState.PRESENT, target)
        say(f"{release.name} lacks {ANALYSIS_COMMON}: compiling the english analyzer module")
        staging = Path(tempfile.mkdtemp(dir=install_dir.parent, prefix=f".{ENGLISH_MODULE}-"))
        try:
            java_file = staging / "src" / _SOURCE.name
            java_file.parent.mkdir()
            java_file.write_text(source, encoding="utf-8")
            built = build_module(
                java_home=java_home,
                install_dir=install_dir,
                source=java_file,
                module=staging / ENGLISH_MODULE,
                jar_name=f"{ENGLISH_MODULE}.jar",
                descriptor=english_module_descriptor(release),
            )
            (built / _STAMP).write_text(stamp)
            built.chmod(0o755)
            if owner is not None:
                chown_tree(built, owner)
            if target.exists():
                shutil.rmtree(target)
            built.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    say(f"english analyzer module built into {target}")
    return EnglishModule(ModuleState.BUILT, target)


def install_english_module(
    install_dir: Path,
    release: EngineRelease,
    java_home: Path,
    *,
    owner: ServiceUser | None = None,
    progress: Progress | None = None,
) -> EnglishModule:
    """:func:`ensure_english_module` for ``engines up``: a failure never raises; it is reported
    through ``progress`` and returned (state ``failed`` and the reason)."""
    say = progress if progress is not None else (lambda _msg: None)
    try:
        return ensure_english_module(install_dir, release, java_home, owner=owner, progress=say)
    except (EngineSetupError, OSError) as exc:
        reason = str(exc)
        say(
            f"the english analyzer module could not be built ({reason}); indices created on "
            f"this engine use the standard analyzer (no stemming)"
        )
        return EnglishModule(ModuleState.FAILED, reason=reason)
