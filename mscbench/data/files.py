"""Files as the data layer handles them: their sha256, and one process at a time per path.

`exclusive` holds an advisory lock file (`fcntl.flock`), released by the kernel when its holder exits,
even by kill -9, so a crash never leaves a path locked.

A second process waits for the first and is told whom it waits for (the holder's process id is written
in the lock file). The holder deletes the lock file before it lets go, so none is left behind; a waiter
that then finds it locked a deleted file locks the path afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mscbench.data.errors import DataError
from mscbench.files import current_umask

CHUNK_BYTES = 1 << 22


def staging_folder(parent: Path, prefix: str) -> Path:
    """A new folder in `parent` that no other process uses, with the usual permissions (mkdtemp makes
    0700; a shared data dir needs what the umask gives)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    folder.chmod(0o777 & ~current_umask())
    return folder


def fingerprint(paths: Iterable[Path]) -> dict[str, str]:
    """Identifies raw input files: name -> "size:sha256"."""
    return {Path(path).name: f"{Path(path).stat().st_size}:{file_sha256(path)}" for path in paths}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def exclusive(lock_path: Path, what: str, report: Callable[[str], None]) -> Iterator[None]:
    """Hold `lock_path` for the block; while another process holds it, say so through `report` and wait."""
    lock_path = Path(lock_path)
    handle = locked(lock_path, what, report)
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # still held: no one else can be using this file
        os.close(handle)  # closing the only descriptor releases the lock


def locked(lock_path: Path, what: str, report: Callable[[str], None]) -> int:
    """A descriptor of `lock_path`, exclusively locked, whose file is still the one at that path."""
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise DataError(f"cannot create the lock file {lock_path} ({error.strerror or error}): "
                            f"pass a writable --data-dir or fix its permissions") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip()
            report(f"waiting: {f'process {holder}' if holder else 'another process'} is {what}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        if still_linked(handle, lock_path):
            return handle
        os.close(handle)  # the previous holder deleted this file on its way out: lock the path afresh


def still_linked(handle: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False
