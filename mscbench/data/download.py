"""Raw files from the web and out of archives, safely.

`download` fetches an http(s) URL into `destination` through `destination.part`: an interrupted transfer
resumes with an HTTP Range request, a server that ignores Range (or answers it from another byte) restarts
cleanly, the sha256 (and size) named by the dataset card is checked, and only a verified file is moved
into place (atomically), so a file under its final name is always complete. Without a checksum the file
must still have the length the server announced (Content-Length, Content-Range or chunked encoding); a
server that announces none gives a file that cannot be told from a cut one, which is refused. One process
at a time downloads a file (a lock beside it).

`extracted` unpacks a zip, tar(.gz) or .gz archive into a folder, refusing any member that would land
outside it (`../x`, absolute names, links pointing out); the folder appears complete or not at all, and
is extracted again when the archive changes (a stamp beside it records the archive's size, mtime and
sha256).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mscbench.data.card import load_card
from mscbench.data.errors import DataError
from mscbench.data.files import file_sha256, staging_folder
from mscbench.data.names import checked_url
from mscbench.files import exclusive

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60
ATTEMPTS = 3  # an interrupted transfer is resumed this many times before giving up
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".gz")

Progress = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None when unknown)


class Interrupted(Exception):
    """The server closed the connection before the whole file came (resumable)."""


def download(url: str, destination: Path, sha256: str | None = None, size: int | None = None,
             progress: Progress | None = None, attempts: int = ATTEMPTS) -> Path:
    """`destination`, downloaded from `url` unless a verified copy is already there."""
    destination = Path(destination)
    checked_url(url, "download")
    with exclusive(destination.with_name(f".{destination.name}.lock"), waiting=ignore):
        if destination.is_file() and matches(destination, sha256, size):
            return destination
        partial = destination.with_name(destination.name + ".part")
        for attempt in range(1, attempts + 1):
            try:
                delimited = transfer(url, partial, size, progress)
                break
            except Interrupted as error:
                if attempt == attempts:
                    kept = f"{partial} is kept: " if partial.exists() else ""
                    raise DataError(f"download of {url} interrupted ({error}); {kept}run the same command "
                                    f"again to resume") from None
        if not delimited and sha256 is None and size is None:
            partial.unlink()
            raise DataError(f"{url} announced no length and the dataset card gives no sha256 or size: a cut "
                            f"transfer could not be told from a whole file, so it was deleted; add the "
                            f"file's sha256 to the card")
        verify(partial, url, sha256, size)
        os.replace(partial, destination)
    return destination


def ignore(holder: str) -> None:
    """Waiting for another download or extraction of the same file needs no message: the bar stalls."""


def download_card_files(card: Path | None, raw_dir: Path,
                        progress: Callable[[str], Progress | None] = lambda name: None) -> list[Path]:
    """Every file the card's [source] lists with a public `url`, downloaded (verified) into `raw_dir`."""
    if card is None:
        raise DataError("this dataset is generated, not downloaded: prepare it without --download")
    info = load_card(card).source
    public = [file for file in (info.files if info else ()) if file.url]
    if not public:
        how = f": {info.obtain}" if info and info.obtain else ""
        raise DataError(f"card {card} lists no public download address{how}")
    return [download(file.url, Path(raw_dir) / file.name, file.sha256, file.size, progress(file.name))
            for file in public]


def transfer(url: str, partial: Path, size: int | None, progress: Progress | None) -> bool:
    """Fetch `url` into `partial`, continuing after the bytes it already holds. True when the server said
    where the file ends (so a cut transfer is known as one)."""
    offset = partial.stat().st_size if partial.exists() else 0
    if size is not None and offset >= size:
        return True  # already whole (or too long: the checksum decides)
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after `offset`: the part file is whole already
            return True
        raise DataError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"cannot download {url}: {getattr(error, 'reason', error)}") from None
    with response:
        try:
            offset, total = where_the_body_goes(response, offset)
        except Interrupted:
            partial.unlink()
            raise
        total = size if total is None else total
        with open(partial, "ab" if offset else "wb") as sink:
            received = copy(response, sink, offset, total, progress)
            sink.flush()
            os.fsync(sink.fileno())
    if total is not None and received < total:
        raise Interrupted(f"{received:,} of {total:,} bytes received")
    return total is not None or response.chunked


def where_the_body_goes(response, offset: int) -> tuple[int, int | None]:
    """(the byte of the file the body starts at, the file's total size or None when the server does not
    say). A whole file (200, or a 206 from byte 0) starts again; a 206 from any byte but `offset` would
    leave a gap or an overlap, so the part file is dropped and the transfer starts over."""
    length = response.headers.get("Content-Length")
    length = int(length) if length is not None and length.isdigit() else None
    if response.status != 206:
        return 0, length
    found = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", response.headers.get("Content-Range", ""))
    start = int(found[1]) if found else None
    if start not in (0, offset):
        raise Interrupted(f"asked to resume at byte {offset:,}, the server answered from "
                          f"{'an unknown byte' if start is None else f'byte {start:,}'}: starting again")
    if found[3] != "*":
        return start, int(found[3])
    return start, None if length is None else start + length


def copy(source: BinaryIO, sink: BinaryIO, done: int, total: int | None, progress: Progress | None) -> int:
    """Stream `source` into `sink`; the bytes in `sink` at the end. A dropped connection is `Interrupted`."""
    if progress:
        progress(done, total)
    while True:
        try:
            chunk = source.read(CHUNK_BYTES)
        except (OSError, ValueError) as error:  # http.client.IncompleteRead is a ValueError
            raise Interrupted(str(error)) from None
        if not chunk:
            return done
        sink.write(chunk)
        done += len(chunk)
        if progress:
            progress(done, total)


def verify(path: Path, url: str, sha256: str | None, size: int | None) -> None:
    """Check a finished download; a wrong one is deleted, so that nothing wrong is ever resumed or used."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        path.unlink()
        raise DataError(f"{url} gave {actual_size:,} bytes, the dataset card says {size:,}: the file was "
                        f"deleted; check the card's size or the address")
    if sha256 is not None and (actual := file_sha256(path)) != sha256.lower():
        path.unlink()
        raise DataError(f"{url} has sha256 {actual}, the dataset card says {sha256}: the file was deleted; "
                        f"check the card's checksum or the address")


def matches(path: Path, sha256: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or file_sha256(path) == sha256.lower()


def is_archive(path: Path) -> bool:
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def extracted(archive: Path, target: Path) -> Path:
    """`target`, a folder holding the archive's contents: kept for later calls while the archive stays the
    same (size, mtime and sha256, recorded in a stamp beside the folder), extracted again when it changes."""
    archive, target = Path(archive), Path(target)
    source = archive_identity(archive)
    stamp = target.with_name(f".{target.name}.source")
    with exclusive(target.with_name(f".{target.name}.lock"), waiting=ignore):
        if target.is_dir() and stamp.is_file() and stamp.read_text() == source:
            return target
        stamp.unlink(missing_ok=True)
        for leftover in [target, *target.parent.glob(f".{target.name}.extracting*")]:  # stale, or a killed run's
            shutil.rmtree(leftover, ignore_errors=True)
        staging = staging_folder(target.parent, f".{target.name}.extracting-")
        try:
            unpack(archive, staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        stamp.write_text(source)  # last: a folder without its stamp is extracted again
    return target


def archive_identity(archive: Path) -> str:
    """"size:mtime:sha256" of the archive: the extraction of another archive of the same name is not reused."""
    status = archive.stat()
    return f"{status.st_size}:{status.st_mtime_ns}:{file_sha256(archive)}"


def unpack(archive: Path, folder: Path) -> None:
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            unpack_zip(archive, folder)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            unpack_tar(archive, folder)
        elif name.endswith(".gz"):
            with gzip.open(archive) as source, open(folder / archive.name[:-3], "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)
        else:
            raise DataError(f"{archive}: not an archive mscbench can open ({', '.join(ARCHIVE_SUFFIXES)})")
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError) as error:
        raise DataError(f"{archive} is damaged ({error}): download it again") from None


def unpack_zip(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            check_member(archive, member.filename)
        bundle.extractall(folder)  # zipfile writes a stored link as a plain file holding its text


def unpack_tar(archive: Path, folder: Path) -> None:
    with tarfile.open(archive) as bundle:
        members = bundle.getmembers()
        for member in members:
            check_member(archive, member.name)
            if member.issym() or member.islnk():
                base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
                check_member(archive, str(base / member.linkname), link=member.name)
            elif not (member.isfile() or member.isdir()):
                raise DataError(f"{archive}: member {member.name!r} is a device or pipe: refusing to extract")
        bundle.extractall(folder, members=members, filter="data")  # the standard library's guard as well


def check_member(archive: Path, name: str, link: str | None = None) -> None:
    """Refuse a member name (or a link's target) that is absolute or climbs out of the folder."""
    if escapes(name):
        what = f"link {link!r} points to {name!r}" if link else f"member {name!r}"
        raise DataError(f"{archive}: {what}, outside the folder it extracts to: refusing to extract "
                        f"(the archive is malformed or malicious)")


def escapes(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            return True
    return path.is_absolute()
