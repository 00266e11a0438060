"""What to fetch for each managed engine version, and which Java runs it. Pure: no I/O.

Both engines publish a minimal "integ-test" distribution to Maven Central; OpenSearch also
publishes the k-NN plugin there, and ``lang-painless`` / ``mapper-extras`` as plain jars (some
distributions lack those modules, which are then assembled from the jars, see
:func:`parse_pom_dependencies` and :func:`plugin_descriptor`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from es_neural.errors import EngineSetupError
from es_neural.settings import EngineKind

__all__ = [
    "SERVED_VERSIONS",
    "EngineRelease",
    "JavaRange",
    "MavenArtifact",
    "ModuleSpec",
    "fallback_release",
    "parse_pom_dependencies",
    "plugin_descriptor",
    "release_for",
    "version_tuple",
]

#: Versions seen served by Maven Central when this catalog was written (others may be too).
SERVED_VERSIONS: dict[EngineKind, tuple[str, ...]] = {
    EngineKind.ELASTICSEARCH: ("9.0.0", "9.1.0", "9.2.0", "9.2.4", "9.3.2", "9.5.0"),
    EngineKind.OPENSEARCH: ("2.19.1", "3.6.0"),
}

#: OpenSearch release used when the configured 3.x one cannot be fetched or run.
OPENSEARCH_FALLBACK_VERSION = "2.19.1"


@dataclass(frozen=True, slots=True)
class MavenArtifact:
    """One Maven Central artifact, e.g. ``org.opensearch.plugin:opensearch-knn:3.6.0.0:zip``."""

    group: str
    artifact: str
    version: str
    packaging: str = "jar"

    @property
    def coordinate(self) -> str:
        """The ``G:A:V:packaging`` form that ``maven-dependency-plugin:copy`` takes."""
        return f"{self.group}:{self.artifact}:{self.version}:{self.packaging}"

    @property
    def filename(self) -> str:
        """The file name Maven gives the artifact when it copies it."""
        return f"{self.artifact}-{self.version}.{self.packaging}"

    def with_packaging(self, packaging: str) -> MavenArtifact:
        return MavenArtifact(self.group, self.artifact, self.version, packaging)


@dataclass(frozen=True, slots=True)
class JavaRange:
    """The Java feature releases an engine runs on (``maximum`` inclusive, ``None`` = any)."""

    minimum: int
    maximum: int | None = None

    def accepts(self, major: int) -> bool:
        return major >= self.minimum and (self.maximum is None or major <= self.maximum)

    def describe(self) -> str:
        if self.maximum is None:
            return f"Java {self.minimum} or newer"
        return f"Java {self.minimum} to {self.maximum}"


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """An OpenSearch module that must be present under ``modules/<name>/``.

    When the distribution lacks it, it is assembled from ``jar`` plus the compile dependencies its
    POM lists, a ``plugin-descriptor.properties`` and (if given) a ``plugin-security.policy``.
    """

    name: str
    jar: MavenArtifact
    #: Plugin class candidates, newest naming first (3.x renamed ``PainlessPlugin`` to
    #: ``PainlessModulePlugin``); the one the jar contains is used.
    classnames: tuple[str, ...]
    description: str
    security_policy: str | None = None

    def classname_in(self, jar_entries: Iterable[str]) -> str:
        """The candidate class that ``jar_entries`` (names inside the jar) contain."""
        entries = set(jar_entries)
        for classname in self.classnames:
            if classname.replace(".", "/") + ".class" in entries:
                return classname
        raise EngineSetupError(
            f"{self.jar.filename} contains none of the plugin classes {', '.join(self.classnames)}"
        )


@dataclass(frozen=True, slots=True)
class EngineRelease:
    """Everything needed to install and run one engine version."""

    engine: EngineKind
    version: str
    distribution: MavenArtifact
    java: JavaRange
    plugins: tuple[MavenArtifact, ...] = ()
    modules: tuple[ModuleSpec, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        """Folder name of the unpacked install, e.g. ``elasticsearch-9.5.0``."""
        return f"{self.engine.value}-{self.version}"

    @property
    def major(self) -> int:
        return version_tuple(self.version)[0]


_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

_PAINLESS_POLICY = """grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";

  // needed to find the classloader to load allowlisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"9.5.0"`` -> ``(9, 5, 0)``; anything else is refused with the reason."""
    match = _VERSION_RE.match(version.strip())
    if match is None:
        raise EngineSetupError(f"engine version {version!r} is not of the form MAJOR.MINOR.PATCH")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _elasticsearch(version: str) -> EngineRelease:
    major = version_tuple(version)[0]
    java_by_major = {8: JavaRange(17), 9: JavaRange(21)}
    if major not in java_by_major:
        served = ", ".join(SERVED_VERSIONS[EngineKind.ELASTICSEARCH])
        raise EngineSetupError(
            f"Elasticsearch {version} is not supported by es-neural engines (8.x and 9.x are); "
            f"versions seen on Maven Central: {served}"
        )
    return EngineRelease(
        engine=EngineKind.ELASTICSEARCH,
        version=version,
        distribution=MavenArtifact(
            "org.elasticsearch.distribution.integ-test-zip", "elasticsearch", version, "zip"
        ),
        java=java_by_major[major],
    )


def _opensearch(version: str) -> EngineRelease:
    major = version_tuple(version)[0]
    # 2.x needs the SecurityManager (removed in Java 24); 3.x needs Java 21+.
    java_by_major = {2: JavaRange(11, 23), 3: JavaRange(21)}
    if major not in java_by_major:
        served = ", ".join(SERVED_VERSIONS[EngineKind.OPENSEARCH])
        raise EngineSetupError(
            f"OpenSearch {version} is not supported by es-neural engines (2.x and 3.x are); "
            f"versions seen on Maven Central: {served}"
        )
    java = java_by_major[major]
    modules = (
        ModuleSpec(
            name="lang-painless",
            jar=MavenArtifact("org.opensearch.plugin", "lang-painless", version),
            classnames=(
                "org.opensearch.painless.PainlessModulePlugin",
                "org.opensearch.painless.PainlessPlugin",
            ),
            description="An easy, safe and fast scripting language for OpenSearch",
            security_policy=_PAINLESS_POLICY,
        ),
        ModuleSpec(
            name="mapper-extras",
            jar=MavenArtifact("org.opensearch.plugin", "mapper-extras-client", version),
            classnames=(
                "org.opensearch.index.mapper.MapperExtrasModulePlugin",
                "org.opensearch.index.mapper.MapperExtrasPlugin",
            ),
            description="Adds advanced field mappers",
        ),
    )
    return EngineRelease(
        engine=EngineKind.OPENSEARCH,
        version=version,
        distribution=MavenArtifact(
            "org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip"
        ),
        java=java,
        plugins=(MavenArtifact("org.opensearch.plugin", "opensearch-knn", f"{version}.0", "zip"),),
        modules=modules,
        notes=("map knn_vector with engine=lucene: the Maven k-NN zip has no native libraries",),
    )


_RELEASES = {EngineKind.ELASTICSEARCH: _elasticsearch, EngineKind.OPENSEARCH: _opensearch}


def release_for(engine: EngineKind | str, version: str) -> EngineRelease:
    """The release description of ``engine`` at ``version``."""
    return _RELEASES[EngineKind(engine)](version)


def fallback_release(release: EngineRelease) -> EngineRelease | None:
    """What to run when ``release`` cannot be fetched or has no suitable Java, if anything.

    OpenSearch 3.x falls back to 2.19.1 on Java 17; nothing else has a fallback.
    """
    if release.engine is EngineKind.OPENSEARCH and release.major >= 3:
        return release_for(EngineKind.OPENSEARCH, OPENSEARCH_FALLBACK_VERSION)
    return None


_POM_NS = "{http://maven.apache.org/POM/4.0.0}"
_RUNTIME_SCOPES = {"compile", "runtime"}


def parse_pom_dependencies(
    pom_xml: str, *, exclude_groups: frozenset[str] = frozenset({"org.opensearch"})
) -> list[MavenArtifact]:
    """The jars a module needs at runtime: compile/runtime, non-optional POM dependencies.

    Groups in ``exclude_groups`` (the server itself) are left out; ``org.opensearch.plugin``
    dependencies such as ``opensearch-scripting-painless-spi`` are kept.
    """
    try:
        root = ET.fromstring(pom_xml)
    except ET.ParseError as exc:
        raise EngineSetupError(f"cannot parse a Maven POM: {exc}") from exc
    ns = _POM_NS if root.tag.startswith(_POM_NS) else ""
    deps: list[MavenArtifact] = []
    for dep in root.findall(f"{ns}dependencies/{ns}dependency"):

        def text(tag: str, default: str = "", dep: ET.Element = dep) -> str:
            node = dep.find(f"{ns}{tag}")
            return (node.text or default).strip() if node is not None else default

        group, artifact, version = text("groupId"), text("artifactId"), text("version")
        scope = text("scope", "compile") or "compile"
        if scope not in _RUNTIME_SCOPES or text("optional", "false") == "true":
            continue
        if group in exclude_groups:
            continue
        if not version or "${" in version:
            raise EngineSetupError(
                f"the POM gives no usable version for {group}:{artifact} ({version!r})"
            )
        packaging = text("type", "jar") or "jar"
        deps.append(MavenArtifact(group, artifact, version, packaging))
    return deps


def plugin_descriptor(module: ModuleSpec, release: EngineRelease, classname: str) -> str:
    """The ``plugin-descriptor.properties`` of ``module`` (class ``classname``) for ``release``."""
    lines = {
        "description": module.description,
        "version": release.version,
        "name": module.name,
        "classname": classname,
        "java.version": str(release.java.minimum),
        "opensearch.version": release.version,
        "custom.foldername": "",
        "extended.plugins": "",
        "has.native.controller": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())
