"""Studies and series still packed in ZIP or tar archives, read in place.

Studies often arrive packed: a PACS export, a data share, and UK Biobank's imaging fields (one ZIP of DICOM files
per subject and field, e.g. ``1000001_20209_2_0.zip`` for the short-axis cines and ``1000001_20208_2_0.zip`` for the
long-axis ones). Every command reads them as they are: an archive given as an input, or lying in a study folder, is
unpacked into a temporary folder of its own (under ``TMPDIR``: point it at a disk with room for a study when the
system's temporary disk is small), read from there as a folder would be, and removed when the study or series has
been read and analysed. What the results say of the input names the archive, never the temporary folder
(``study.zip/SAX/IM_0001.dcm``).

Checked before anything is unpacked, each with a named :class:`ArchiveError` (a :class:`CorruptFileError`):
a damaged or cut-short archive, a password-protected ZIP, a member whose name leads outside the archive's own folder
(an absolute path or ``..``; tar members are also read with Python's ``data`` filter), and an archive that would
not fit in the free space of the temporary disk. Links inside a ZIP are not unpacked.

Formats: ZIP (``.zip``, any name: recognised by content) and tar, plain or compressed (``.tar``, ``.tar.gz``,
``.tgz``, ``.tar.bz2``, ``.tar.xz``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import weakref
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from CardiacLandmarksLib.core.errors import CorruptFileError
from CardiacLandmarksLib.io.common import archive_kind

logger = logging.getLogger(__name__)

#: room left on the temporary disk beyond an archive's unpacked size (bytes)
FREE_MARGIN_BYTES = 200 * 1024 * 1024
_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


class ArchiveError(CorruptFileError):
    """An archive that cannot be unpacked safely: damaged or cut short, password-protected, holding a member whose
    name leads outside its folder, or larger than the free space of the temporary disk."""


def archive_stem(path: str | Path) -> str:
    """The archive's name without its archive suffix: ``p001.tar.gz`` -> ``p001``, ``1000001_20209_2_0.zip`` ->
    ``1000001_20209_2_0``."""
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _unsafe(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.startswith(("/", "\\")) or ".." in parts or (bool(parts) and ":" in parts[0])


def _check_room(archive: Path, size: int, into: Path) -> None:
    free = shutil.disk_usage(into).free
    if size + FREE_MARGIN_BYTES > free:
        raise ArchiveError(f"{archive.name} unpacks to {size / 1e9:.2f} GB and the temporary disk ({into.parent}) has "
                           f"{free / 1e9:.2f} GB free: set TMPDIR to a folder on a larger disk, or unpack it yourself "
                           f"and give the folder: {archive}")


def _damaged(archive: Path, kind: str, exc: BaseException) -> ArchiveError:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # not the archive's fault
        return ArchiveError(f"the temporary disk filled while unpacking {archive.name} ({exc.strerror}): set TMPDIR "
                            f"to a folder on a larger disk, or unpack it yourself and give the folder: {archive}")
    return ArchiveError(f"{archive.name} is a damaged {kind} archive (cut short in a copy or download?): {exc}; copy "
                        f"it again: {archive}")


def unpack(archive: str | Path, into: str | Path) -> int:
    """Unpack ``archive`` into the folder ``into`` (made if missing), after the checks of the module docstring.

    Returns:
        the number of files unpacked.

    Raises:
        ArchiveError: damaged, password-protected, unsafe member name, or too large for the free space.
    """
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    kind = archive_kind(archive)
    if kind == "ZIP":
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                for m in members:
                    if _unsafe(m.filename):
                        raise ArchiveError(f"{archive.name} holds {m.filename!r}, a name that leads outside the "
                                           f"archive's folder: not unpacked: {archive}")
                    if m.flag_bits & 0x1:
                        raise ArchiveError(f"{archive.name} is password-protected ({m.filename}): unpack it with its "
                                           f"password and give the folder: {archive}")
                links = [m for m in members if stat.S_ISLNK(m.external_attr >> 16)]
                if links:
                    logger.warning("%s: %d link(s) inside not unpacked (%s)", archive.name, len(links),
                                   links[0].filename)
                members = [m for m in members if m not in links]
                _check_room(archive, sum(m.file_size for m in members), into)
                for m in members:
                    zf.extract(m, into)
                return len(members)
        except ArchiveError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise _damaged(archive, "ZIP", exc) from exc
    if kind == "tar":
        try:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    if _unsafe(m.name):
                        raise ArchiveError(f"{archive.name} holds {m.name!r}, a name that leads outside the "
                                           f"archive's folder: not unpacked: {archive}")
                _check_room(archive, sum(m.size for m in members if m.isfile()), into)
                tf.extractall(into, filter="data")
                return sum(1 for m in members if m.isfile())
        except ArchiveError:
            raise
        except tarfile.FilterError as exc:
            raise ArchiveError(f"{archive.name}: {exc}: not unpacked: {archive}") from exc
        except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
            raise _damaged(archive, "tar", exc) from exc
    raise ArchiveError(f"{archive.name} is not a ZIP or tar archive: {archive}")


class Unpacked:
    """The temporary folder that holds the archives of one study or series, unpacked, and how to name what lies in
    it: :meth:`shown` turns a path under it back into the archive's path (``/data/p001.zip/SAX/IM_0001.dcm``).

    The folder is removed by :meth:`cleanup`, or when the object is no longer referenced (or at exit): keep it
    alive as long as anything reads from it (:func:`CardiacLandmarksLib.study.routing.route_study` ties it to the
    routed series).
    """

    def __init__(self) -> None:
        try:
            self.root = Path(tempfile.mkdtemp(prefix="cardiac-landmarks-unpacked-"))
        except OSError as exc:  # TMPDIR read-only, or no usable temporary folder at all
            raise ArchiveError(f"no temporary folder to unpack archives into ({exc}): set TMPDIR to a writable "
                               f"folder") from exc
        self.archives: dict[Path, Path] = {}  # unpacked folder -> archive
        self.given: set[Path] = set()  # the archives as the inputs named them (what a folder scan meets)
        self.n_files = 0
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def add(self, archive: str | Path) -> Path:
        """The folder ``archive`` is unpacked into (a sub-folder of its own, named as the archive), unpacking it on
        the first call. Raises ArchiveError."""
        self.given.add(Path(archive))
        archive = Path(archive).expanduser().resolve()
        for into, known in self.archives.items():
            if known == archive:
                return into
        into = self.root / str(len(self.archives)) / archive.name  # named as the archive: 'ignored in p001.zip'
        logger.info("unpacking %s into %s", archive, into)
        self.n_files += unpack(archive, into)
        self.archives[into] = archive
        return into

    def read(self, load):
        """``load()`` (a series read from the temporary folder), its errors, source and notes naming the archive
        instead: the one wrapping of every read from an unpacked archive."""
        try:
            series = load()
        except Exception as exc:
            if (named := self.renamed(exc)) is exc:
                raise
            raise named from exc
        return self.name_series(series)

    def name_series(self, series):
        """``series`` with its source and metadata naming the archive instead of the temporary folder."""
        series.source = self.shown(str(series.source))
        series.metadata = remap_paths(series.metadata, self)
        return series

    def shown(self, text: str) -> str:
        """``text`` with every path under the temporary folder named by its archive instead."""
        for into, archive in sorted(self.archives.items(), key=lambda kv: -len(str(kv[0]))):
            text = text.replace(str(into), str(archive))
        return text.replace(str(self.root), "(unpacked archive)")

    def renamed(self, exc: Exception) -> Exception:
        """The same error, its text naming the archives (:meth:`shown`); ``exc`` itself when its class cannot be
        made from a text."""
        text = self.shown(str(exc))
        if text == str(exc):
            return exc
        try:
            return type(exc)(text)
        except TypeError:
            return exc

    def cleanup(self) -> None:
        """Remove the temporary folder now."""
        self._finalizer()

    @property
    def size_text(self) -> str:
        size = sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())
        return f"{self.n_files} file(s), {size / 1e6:.0f} MB"


def unpack_inputs(paths: list[Path]) -> tuple[list[Path], Unpacked | None]:
    """The inputs of a study with its archives unpacked.

    Args:
        paths: existing files and folders. An archive file becomes its unpacked folder; a folder that holds archives
            (in it or in its sub-folders) adds each one's unpacked folder, and stays an input itself only when it
            holds anything else (a folder of UK Biobank ZIPs becomes the ZIPs' contents).

    Returns:
        (the paths to read, the :class:`Unpacked` holding the temporary folder, or None when nothing was packed).

    Raises:
        ArchiveError: an archive that cannot be unpacked (nothing is read then).
    """
    unpacked: Unpacked | None = None
    out: list[Path] = []
    try:
        for p in paths:
            if p.is_file() and archive_kind(p):
                unpacked = unpacked or Unpacked()
                out.append(_top(unpacked.add(p)))
            elif p.is_dir():
                from CardiacLandmarksLib.io.dicom import _iter_files

                files = list(_iter_files(p, True))  # sub-folders too; hidden files and result folders left out
                packed = [f for f in files if archive_kind(f)]
                if not packed:
                    out.append(p)
                    continue
                if len(packed) < len(files):
                    out.append(p)  # (its archives are not read again: route_study skips them)
                unpacked = unpacked or Unpacked()
                out += [_top(unpacked.add(f)) for f in packed]
            else:
                out.append(p)
    except BaseException:
        if unpacked is not None:
            unpacked.cleanup()
        raise
    return out, unpacked


def archive_member(path: str | Path) -> tuple[Path, PurePosixPath] | None:
    """``(archive, path inside it)`` for a path that goes through an archive, as results name an input read from
    one (``/data/p001.zip/p001/patient001_ED.nii.gz`` -> ``(/data/p001.zip, p001/patient001_ED.nii.gz)``); None when
    the path exists or no archive lies on it."""
    p = Path(path).expanduser()
    if p.exists():
        return None
    for parent in p.parents:
        if parent.is_file():
            return (parent, PurePosixPath(p.relative_to(parent).as_posix())) if archive_kind(parent) else None
        if parent.is_dir():
            return None
    return None


@contextlib.contextmanager
def reachable(paths: list[str | Path]):
    """The paths made readable for a block: those that go through an archive (:func:`archive_member`: a result's
    recorded input read from an archive) point into their archive unpacked in a temporary folder, removed when the
    block ends, and an archive itself (the recorded input of a series read from a ZIP's top folder) points at that
    folder; the others are returned as they are.

    Yields:
        ``(paths, unpacked)``: the paths to read, and the :class:`Unpacked` (None when nothing was unpacked) whose
        :meth:`~Unpacked.shown` names what is read there by the archive again.

    Raises:
        ArchiveError: an archive that cannot be unpacked.
    """
    unpacked: Unpacked | None = None
    out: list[Path] = []
    try:
        for p in paths:
            if Path(p).is_file() and archive_kind(p):  # the archive itself: a study read from its top folder
                archive, inner = Path(p), PurePosixPath()
            elif (member := archive_member(p)) is not None:
                archive, inner = member
            else:
                out.append(Path(p))
                continue
            unpacked = unpacked or Unpacked()
            out.append(unpacked.add(archive).joinpath(*inner.parts))
        yield out, unpacked
    finally:
        if unpacked is not None:
            unpacked.cleanup()


def single_root(folder: Path) -> Path:
    """The folder to read in an unpacked archive: its one top entry when it holds just one (a zipped folder, or a
    single image file), else the folder itself."""
    entries = [f for f in folder.iterdir() if not f.name.startswith(".") and f.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 else folder


def _top(into: Path) -> Path:
    """An unpacked archive's folder to read: its single top folder when it has one (as ``unzip study.zip`` of a
    zipped folder gives), else the folder itself."""
    root = single_root(into)
    return root if root.is_dir() else into


def remap_paths(value, unpacked: Unpacked):
    """``value`` (a str, or a dict / list / tuple of them, nested) with temporary paths named by their archive."""
    if isinstance(value, str):
        return unpacked.shown(value) if str(unpacked.root) in value else value
    if isinstance(value, dict):
        return {k: remap_paths(v, unpacked) for k, v in value.items()}
    if isinstance(value, list):
        return [remap_paths(v, unpacked) for v in value]
    if isinstance(value, tuple):
        return tuple(remap_paths(v, unpacked) for v in value)
    if isinstance(value, os.PathLike) and str(unpacked.root) in str(value):
        return unpacked.shown(str(value))
    return value
