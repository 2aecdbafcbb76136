"""Safe file writing: atomic replacement and backups, so no output is ever half-written and
no user-corrected file is ever lost.

Every writer in this package goes through :func:`atomic_write_bytes` /
:func:`atomic_write_text`: the data go to a temporary file in the target's folder, are
flushed to disk, and then replace the target with one ``os.replace`` (atomic on POSIX and
Windows when both names are on the same file system). A crash or a full disk leaves
either the old file or the new one, never a truncated mix.

With ``backup_existing=True`` an existing target is first kept as
``<name>.bak-YYYYmmdd-HHMMSS`` (``-1``, ``-2`` ... appended when that name is taken), made
with a hard link when the file system allows it (so the old content stays reachable at
every instant) and with a copy otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from CardiacLandmarksLib.core.errors import OutputExistsError, OutputPathError

logger = logging.getLogger(__name__)

#: what the callers of the writers may ask for when the target exists
IF_EXISTS = ("backup", "overwrite", "error")


def backup_path_for(path: str | Path, when: float | None = None) -> Path:
    """A free backup name next to ``path``: ``<name>.bak-YYYYmmdd-HHMMSS`` (local time of ``when``,
    default now), with ``-1``, ``-2`` ... appended while the name is taken."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    base = path.with_name(f"{path.name}.bak-{stamp}")
    candidate, n = base, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def backup_file(path: str | Path) -> Path:
    """Keep the current content of ``path`` under :func:`backup_path_for` and return that path.

    A hard link is used when possible (instant, and the content is never absent), otherwise
    a copy with metadata (``shutil.copy2``). The original stays in place.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot back up {path}: it does not exist")
    for _ in range(100):
        target = backup_path_for(path)
        try:
            os.link(path, target)
            return target
        except FileExistsError:  # raced with another writer: take the next number
            continue
        except OSError:
            # no hard links here (FAT, some network shares): copy, refusing to clobber
            try:
                with open(path, "rb") as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst)
                shutil.copystat(path, target)
                return target
            except FileExistsError:
                continue
    raise OSError(f"could not find a free backup name for {path}")


def atomic_write_bytes(
    path: str | Path, data: bytes, backup_existing: bool = False, if_exists: str | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    Args:
        path: target file; its folder is created when missing.
        data: the bytes to write.
        backup_existing: when True and ``path`` exists, keep the old file as
            ``<name>.bak-YYYYmmdd-HHMMSS`` before replacing it (see :func:`backup_file`).
        if_exists: overrides ``backup_existing`` when given: ``"backup"`` (same as
            ``backup_existing=True``), ``"overwrite"`` (replace without a backup) or
            ``"error"`` (raise :class:`~.errors.OutputExistsError` and write nothing).

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``if_exists="error"`` and the file exists.
        ValueError: unknown ``if_exists``.
        OutputPathError: (an ``OSError``) the folder cannot be created or written, the disk is full ...: the
            message names the file and the reason (and the space left, for a full disk); the target is then
            untouched and the temporary file removed.
    """
    path = Path(path)
    mode = if_exists if if_exists is not None else ("backup" if backup_existing else "overwrite")
    if mode not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, not {if_exists!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    exists = path.exists()
    if exists and mode == "error":
        raise OutputExistsError(f"{path} already exists (not replaced)")
    if exists and path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file")

    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode the target has, or the usual default
        if exists:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        if exists and mode == "backup":
            kept = backup_file(path)
            logger.info("kept previous %s as %s", path.name, kept.name)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputPathError):
            raise _write_error(path, exc, len(data)) from exc
        raise
    _fsync_dir(path.parent)
    return path


def _write_error(path: Path, exc: OSError, size: int | None = None) -> OutputPathError:
    """The named error for a file that could not be written: which file, why, and for a full disk what is free."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        with contextlib.suppress(OSError, StopIteration):
            free = shutil.disk_usage(next(q for q in (path.parent, *path.parents) if q.exists())).free
            reason += (f" (the file needs {size / 1e6:.1f} MB, " if size is not None else " (") + \
                f"{free / 1e6:.1f} MB are free there): free some space, or give another output folder"
    return OutputPathError(f"cannot write {path}: {reason}")


def atomic_write_text(
    path: str | Path,
    text: str,
    backup_existing: bool = False,
    if_exists: str | None = None,
    encoding: str = "utf-8",
) -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`atomic_write_bytes` for the arguments.

    The text is written as given (``\\n`` line ends are not translated), encoded with
    ``encoding`` (UTF-8 by default).
    """
    return atomic_write_bytes(path, text.encode(encoding), backup_existing=backup_existing, if_exists=if_exists)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the OS allows syncing a folder (POSIX); ignored elsewhere."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks): model weights against their cards, inputs and
    outputs in ``run.json``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
