"""What a name from the command line or a dataset card may be, checked before anything is read or written.

Names become paths (`<data-dir>/<name>/<variant>/`, `<raw-dir>/<file>`), so a hostile or careless one
(`../victim`, `/etc/passwd`) could write or read outside the folder it belongs to:

- dataset and variant names are plain identifiers: letters, digits, `-`, `_` and `.` (not leading, so
  neither `..` nor a hidden folder), at most 100 characters;
- a download's `name` is a plain file name, written inside the raw folder;
- a table's `path` is relative to the raw folder and never climbs out of it (no `..`, not absolute),
  unless the card says `allow_outside_raw_dir = true`;
- a download's `url` is http or https (a `file://` address would copy local files).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

from mscbench.data.errors import DataError

IDENTIFIER = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
URL_SCHEMES = ("http", "https")


def checked_identifier(name: str, what: str) -> str:
    """`name` if it is a plain identifier, else one line saying what a name may hold."""
    if not IDENTIFIER.fullmatch(name):
        raise DataError(f"{what} {name!r} is not a plain name: use letters, digits, '-', '_' and '.' "
                        f"(not first), at most 100 characters")
    return name


def checked_file_name(name: str, where: str) -> str:
    """`name` if it is a plain file name (no folder part, not `.` or `..`)."""
    if name in ("", ".", "..") or PurePosixPath(name).name != name or PureWindowsPath(name).name != name:
        raise DataError(f"{where}: name {name!r} must be a plain file name (it is written inside the raw "
                        f"folder), without '/', '\\' or '..'")
    return name


def checked_relative_path(path: str, where: str) -> str:
    """`path` if it stays inside the folder it is relative to."""
    parts = PurePosixPath(path.replace("\\", "/"))
    if parts.is_absolute() or PureWindowsPath(path).drive or ".." in parts.parts or path.startswith("~"):
        raise DataError(f"{where}: path {path!r} leaves --raw-dir; write it relative to --raw-dir without "
                        f"'..', or set allow_outside_raw_dir = true in the table if you mean it")
    return path


def checked_url(url: str, where: str) -> str:
    """`url` if it is an http(s) address."""
    if urlsplit(url).scheme.lower() not in URL_SCHEMES or not urlsplit(url).netloc:
        raise DataError(f"{where}: url {url!r} must be an http:// or https:// address")
    return url
