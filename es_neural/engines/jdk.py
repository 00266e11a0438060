"""Finding a JDK that an engine runs on: ``release`` files under the usual JVM folders."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from es_neural.engines.catalog import EngineRelease, JavaRange
from es_neural.errors import EngineSetupError

__all__ = [
    "DEFAULT_JDK_ROOTS",
    "Jdk",
    "NoSuitableJdkError",
    "choose_jdk",
    "discover_jdks",
    "java_major",
    "jdk_at",
    "missing_jdk_message",
    "parse_java_release",
    "require_jdk",
]

#: Folders whose sub-folders are scanned for JDKs (``<root>/<jdk>/bin/java`` + ``release``).
DEFAULT_JDK_ROOTS: tuple[Path, ...] = (
    Path("/usr/lib/jvm"),
    Path("/usr/java"),
    Path("/opt/java"),
    Path("/opt"),
    Path("/Library/Java/JavaVirtualMachines"),
)

_RELEASE_LINE = re.compile(r'^JAVA_VERSION\s*=\s*"?([^"\s]+)"?\s*$', re.MULTILINE)
_LEADING_INT = re.compile(r"^(\d+)")


class NoSuitableJdkError(EngineSetupError):
    """No installed JDK runs the engine version asked for."""


@dataclass(frozen=True, slots=True)
class Jdk:
    home: Path
    version: str
    major: int


def parse_java_release(text: str) -> str | None:
    """``JAVA_VERSION`` of a JDK's ``release`` file (``"25.0.3"``, ``"1.8.0_292"``), if any."""
    match = _RELEASE_LINE.search(text)
    return match.group(1) if match else None


def java_major(version: str) -> int:
    """The feature release: ``"1.8.0_292"`` -> 8, ``"17.0.15"`` -> 17, ``"21-ea"`` -> 21."""
    parts = version.split(".")
    first = parts[0]
    if first == "1" and len(parts) > 1:
        first = parts[1]
    match = _LEADING_INT.match(first)
    if match is None:
        raise ValueError(f"not a Java version: {version!r}")
    return int(match.group(1))


def choose_jdk(jdks: Iterable[Jdk], java: JavaRange) -> Jdk | None:
    """The newest JDK ``java`` accepts (ties: the first given), or ``None``."""
    best: Jdk | None = None
    for jdk in jdks:
        if java.accepts(jdk.major) and (best is None or jdk.major > best.major):
            best = jdk
    return best


def jdk_at(home: Path) -> Jdk | None:
    """The JDK installed at ``home``, when it has ``bin/java`` and a readable ``release`` file."""
    for candidate in (home, home / "Contents" / "Home"):
        java = candidate / "bin" / "java"
        release = candidate / "release"
        if not (java.is_file() and release.is_file()):
            continue
        try:
            version = parse_java_release(release.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if version is None:
            continue
        try:
            return Jdk(candidate, version, java_major(version))
        except ValueError:
            continue
    return None


def discover_jdks(roots: Sequence[Path] = DEFAULT_JDK_ROOTS) -> list[Jdk]:
    """JDKs found one level under ``roots``, each real folder once (symlinks collapse)."""
    found: dict[Path, Jdk] = {}
    for root in roots:
        if not root.is_dir():
            continue
        try:
            children = sorted(root.iterdir())
        except OSError:
            continue
        for child in children:
            jdk = jdk_at(child)
            if jdk is None:
                continue
            real = jdk.home.resolve()
            if real not in found:
                found[real] = Jdk(real, jdk.version, jdk.major)
    return list(found.values())


def missing_jdk_message(release: EngineRelease, jdks: Sequence[Jdk]) -> str:
    seen = ", ".join(f"Java {j.major} at {j.home}" for j in jdks) or "none"
    return (
        f"{release.engine.value} {release.version} needs {release.java.describe()}; "
        f"JDKs found: {seen}. Install one, e.g. a Temurin {max(release.java.minimum, 21)} JDK "
        f"(`apt-get install temurin-{max(release.java.minimum, 21)}-jdk` from the Adoptium apt "
        f"repository, or unpack it under /usr/lib/jvm), or pass java_home= to LocalEngines."
    )


def require_jdk(
    release: EngineRelease, *, java_home: Path | None, roots: Sequence[Path] = DEFAULT_JDK_ROOTS
) -> Jdk:
    """The JDK to run ``release`` with: ``java_home`` when given (checked), else discovered."""
    if java_home is not None:
        jdk = jdk_at(java_home)
        if jdk is None:
            raise EngineSetupError(f"java_home {java_home} has no bin/java with a release file")
        if not release.java.accepts(jdk.major):
            raise NoSuitableJdkError(
                f"{release.engine.value} {release.version} needs {release.java.describe()}, "
                f"but java_home {java_home} is Java {jdk.major}"
            )
        return jdk
    jdks = discover_jdks(roots)
    jdk = choose_jdk(jdks, release.java)
    if jdk is None:
        raise NoSuitableJdkError(missing_jdk_message(release, jdks))
    return jdk
