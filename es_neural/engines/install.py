"""Fetching (Maven), unpacking and completing an engine install; the service user it runs as.

Layout under ``settings.home``::

    downloads/<artifact>-<version>.<ext>     cached archives and jars (fetched once)
    engines/<engine>-<version>/               unpacked install, complete when .es-neural.json exists
    locks/                                    fcntl locks (downloads, installs, maven)
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from es_neural.engines.catalog import (
    SERVED_VERSIONS,
    EngineRelease,
    MavenArtifact,
    ModuleSpec,
    parse_pom_dependencies,
    plugin_descriptor,
)
from es_neural.errors import EngineSetupError

__all__ = [
    "SERVICE_USER",
    "ArtifactNotServedError",
    "Installer",
    "ServiceUser",
    "ensure_service_user",
    "file_lock",
    "module_present",
]

SERVICE_USER = "es-neural"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy"
INSTALL_MARKER = ".es-neural.json"
#: How long a "not served" answer from Maven Central is remembered.
NOT_SERVED_TTL_S = 24 * 3600

Progress = Callable[[str], None]


class ArtifactNotServedError(EngineSetupError):
    """Maven Central does not serve the artifact (as opposed to Maven failing otherwise)."""


@contextlib.contextmanager
def file_lock(path: Path, progress: Progress | None = None) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``path`` for the ``with`` block (other processes wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(f"waiting for another es-neural process (lock {path.name})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: Path


def ensure_service_user(name: str = SERVICE_USER) -> ServiceUser:
    """The unprivileged user engines run as when we are root (created once with ``useradd``)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        result = subprocess.run(
            [useradd, "-r", "-m", "-s", shell, name], capture_output=True, text=True, check=False
        )
        if result.returncode not in (0, 9):  # 9: exists (a concurrent useradd won)
            raise EngineSetupError(
                f"cannot create the service user {name!r} that engines run as (they refuse to "
                f"run as root): {result.stderr.strip() or result.stdout.strip()}"
            ) from None
        entry = pwd.getpwnam(name)
    return ServiceUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def chown_tree(path: Path, user: ServiceUser) -> None:
    """``chown -R`` without following symlinks."""
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


def _can_traverse(st: os.stat_result, user: ServiceUser, groups: set[int]) -> bool:
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def grant_traverse(path: Path, user: ServiceUser, progress: Progress) -> None:
    """Make every folder above ``path`` searchable by ``user`` (adds ``o+x`` where missing).

    Root's home is usually ``drwx------``, which would hide ``~/.cache/es-neural`` from the
    service user. Only the search bit is added: listing stays forbidden.
    """
    groups = {g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem} | {user.gid}
    for folder in reversed(path.resolve().parents):
        st = folder.stat()
        if not _can_traverse(st, user, groups):
            progress(f"adding o+x (search only) to {folder} so user {user.name!r} can reach {path}")
            os.chmod(folder, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def module_present(modules_dir: Path, name: str) -> bool:
    """Whether ``modules/<name>/`` holds a plugin descriptor and at least one jar."""
    folder = modules_dir / name
    return (folder / "plugin-descriptor.properties").is_file() and any(folder.glob("*.jar"))


def extract_zip(archive: Path, dest: Path) -> None:
    """Unzip ``archive`` into ``dest``, dropping its single top folder, keeping file modes."""
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        tops = {PurePosixPath(i.filename).parts[0] for i in infos if i.filename.strip("/")}
        strip = 1 if len(tops) == 1 and all("/" in i.filename for i in infos) else 0
        for info in infos:
            parts = PurePosixPath(info.filename).parts[strip:]
            if not parts:
                continue
            if any(p in ("..", "") for p in parts) or PurePosixPath(info.filename).is_absolute():
                raise EngineSetupError(f"refusing unsafe path {info.filename!r} in {archive}")
            target = dest.joinpath(*parts)
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                os.symlink(zf.read(info).decode("utf-8"), target)
                continue
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target, stat.S_IMODE(mode) or 0o644)


class Installer:
    """Fetches and installs releases under ``home``; every step is done once and cached."""

    def __init__(self, home: Path, *, progress: Progress) -> None:
        self.home = home
        self.downloads = home / "downloads"
        self.engines = home / "engines"
        self.locks = home / "locks"
        self._progress = progress

    # -- downloads ---------------------------------------------------------------------------

    def _not_served_marker(self, artifact: MavenArtifact) -> Path:
        return self.downloads / f".{artifact.filename}.not-served"

    def fetch(self, artifact: MavenArtifact) -> Path:
        """The cached file of ``artifact``, fetched with Maven the first time."""
        target = self.downloads / artifact.filename
        if target.is_file():
            return target
        with file_lock(self.locks / f"download-{artifact.filename}.lock", self._progress):
            if target.is_file():
                return target
            marker = self._not_served_marker(artifact)
            if marker.is_file() and time.time() - marker.stat().st_mtime < NOT_SERVED_TTL_S:
                raise ArtifactNotServedError(self._not_served_message(artifact, cached=True))
            mvn = shutil.which("mvn")
            if mvn is None:
                raise EngineSetupError(
                    f"Maven (`mvn`) is needed to fetch {artifact.coordinate} from Maven Central "
                    f"and is not on PATH: install it (`apt-get install maven`), or put "
                    f"{artifact.filename} into {self.downloads} yourself"
                )
            self.downloads.mkdir(parents=True, exist_ok=True)
            self._progress(f"downloading {artifact.coordinate} with Maven")
            started = time.monotonic()
            with (
                file_lock(self.locks / "maven.lock", self._progress),
                tempfile.TemporaryDirectory(dir=self.downloads, prefix=".fetch-") as tmp,
            ):
                result = subprocess.run(
                    [
                        mvn,
                        "-B",
                        "-q",
                        "-U",
                        MAVEN_DEPENDENCY_PLUGIN,
                        f"-Dartifact={artifact.coordinate}",
                        f"-DoutputDirectory={tmp}",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    cwd=tmp,
                    stdin=subprocess.DEVNULL,
                )
                fetched = Path(tmp) / artifact.filename
                if result.returncode != 0 or not fetched.is_file():
                    output = (result.stdout + result.stderr).strip()
                    if "Could not find artifact" in output or "was not found in" in output:
                        marker.touch()
                        raise ArtifactNotServedError(self._not_served_message(artifact))
                    tail = "\n".join(output.splitlines()[-15:])
                    raise EngineSetupError(
                        f"Maven could not fetch {artifact.coordinate} (exit {result.returncode}):"
                        f"\n{tail}"
                    )
                os.replace(fetched, target)
            size = target.stat().st_size / 1e6
            self._progress(
                f"downloaded {artifact.filename} ({size:.1f} MB) in "
                f"{time.monotonic() - started:.0f} s"
            )
            return target

    def _not_served_message(self, artifact: MavenArtifact, *, cached: bool = False) -> str:
        served = next((v for e, v in SERVED_VERSIONS.items() if e.value == artifact.artifact), ())
        hint = f"; versions seen served: {', '.join(served)}" if served else ""
        marker = self._not_served_marker(artifact)
        when = f" (remembered from an earlier attempt; delete {marker} to retry)" if cached else ""
        return f"Maven Central does not serve {artifact.coordinate}{when}{hint}"

    # -- installs ----------------------------------------------------------------------------

    def install_dir(self, release: EngineRelease) -> Path:
        return self.engines / release.name

    def is_installed(self, release: EngineRelease) -> bool:
        return (self.install_dir(release) / INSTALL_MARKER).is_file()

    def ensure_installed(
        self, release: EngineRelease, *, java_home: Path, owner: ServiceUser | None
    ) -> Path:
        """The complete install of ``release`` (unpacked, modules and plugins added) once."""
        dest = self.install_dir(release)
        if (dest / INSTALL_MARKER).is_file():
            return dest
        with file_lock(self.locks / f"install-{release.name}.lock", self._progress):
            if (dest / INSTALL_MARKER).is_file():
                return dest
            archive = self.fetch(release.distribution)
            plugin_zips = [self.fetch(p) for p in release.plugins]
            if dest.exists():
                self._progress(f"removing the incomplete install {dest}")
                shutil.rmtree(dest)
            self.engines.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.engines, prefix=f".{release.name}-"))
            try:
                self._progress(f"unpacking {archive.name}")
                extract_zip(archive, staging)
                for module in release.modules:
                    if not module_present(staging / "modules", module.name):
                        self._assemble_module(staging, module, release)
                for plugin_zip in plugin_zips:
                    self._install_plugin(staging, plugin_zip, release, java_home)
                if owner is not None:
                    chown_tree(staging, owner)
                marker = {
                    "engine": release.engine.value,
                    "version": release.version,
                    "distribution": release.distribution.coordinate,
                    "plugins": [p.coordinate for p in release.plugins],
                    "installed_at": time.time(),
                }
                (staging / INSTALL_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
                os.replace(staging, dest)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._progress(f"installed {release.name} in {dest}")
            return dest

    def _assemble_module(self, install: Path, module: ModuleSpec, release: EngineRelease) -> None:
        """Build ``modules/<name>/`` from Maven jars (the distribution lacks it)."""
        self._progress(f"{release.name} lacks module {module.name}: assembling it from Maven jars")
        pom = self.fetch(module.jar.with_packaging("pom"))
        jars = [module.jar, *parse_pom_dependencies(pom.read_text(encoding="utf-8"))]
        folder = install / "modules" / module.name
        folder.mkdir(parents=True, exist_ok=True)
        for jar in jars:
            shutil.copy2(self.fetch(jar), folder / jar.filename)
        with zipfile.ZipFile(folder / module.jar.filename) as jar_zip:
            classname = module.classname_in(jar_zip.namelist())
        descriptor = plugin_descriptor(module, release, classname)
        (folder / "plugin-descriptor.properties").write_text(descriptor)
        if module.security_policy is not None and release.major < 3:
            (folder / "plugin-security.policy").write_text(module.security_policy)

    def _install_plugin(
        self, install: Path, plugin_zip: Path, release: EngineRelease, java_home: Path
    ) -> None:
        self._progress(f"installing plugin {plugin_zip.name}")
        tool = install / "bin" / f"{release.engine.value}-plugin"
        env = dict(os.environ)
        env.pop("JAVA_HOME", None)
        env.update(
            {
                "OPENSEARCH_JAVA_HOME": str(java_home),
                "ES_JAVA_HOME": str(java_home),
                "OPENSEARCH_PATH_CONF": str(install / "config"),
                "ES_PATH_CONF": str(install / "config"),
            }
        )
        result = subprocess.run(
            [str(tool), "install", "--batch", plugin_zip.resolve().as_uri()],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise EngineSetupError(
                f"installing {plugin_zip.name} into {release.name} failed "
                f"(exit {result.returncode}):\n{output}"
            )
