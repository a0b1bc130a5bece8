"""Files as the data layer handles them: their sha256 and fingerprint, private staging folders."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

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
