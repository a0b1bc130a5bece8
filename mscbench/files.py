"""File writing shared by every part that leaves files behind (prepared data, runs, baselines, tables).

`exclusive` lets one process at a time work on a path (a prepared dataset, a run): an advisory lock file
(`fcntl.flock`), released by the kernel when its holder exits, even by kill -9, so a crash never leaves
a path locked. A second process waits and is told whom it waits for (the holder writes its process id
into the lock file). The holder deletes the lock file before it lets go, so none is left behind; a
waiter that then finds it locked a deleted file locks the path afresh.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mscbench.errors import UserError


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; a shared data dir needs 0644
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def exclusive(lock_path: Path, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold `lock_path` for the block; while another process holds it, call `waiting` with who it is
    ("process N") and wait."""
    lock_path = Path(lock_path)
    handle = locked(lock_path, waiting)
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # still held: no one else can be using this file
        os.close(handle)  # closing the only descriptor releases the lock


def locked(lock_path: Path, waiting: Callable[[str], None]) -> int:
    """A descriptor of `lock_path`, exclusively locked, whose file is still the one at that path."""
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise UserError(f"cannot create the lock file {lock_path} ({error.strerror or error}): "
                            f"choose a writable folder or fix its permissions") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip()
            waiting(f"process {holder}" if holder else "another process")
            fcntl.flock(handle, fcntl.LOCK_EX)
        if still_linked(handle, lock_path):
            return handle
        os.close(handle)  # the previous holder deleted this file on its way out: lock the path afresh


def still_linked(handle: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False
