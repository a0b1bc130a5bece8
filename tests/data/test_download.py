"""Downloads against a local HTTP server (resume, checksum, no Range support) and safe archive extraction."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from mscbench.data.download import download, extracted
from mscbench.data.errors import DataError
from tests.data.http_server import Site, serving

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, not a multiple of the 1 MiB chunk
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def site():
    with serving(Site(files={"/raw.csv": PAYLOAD})) as running:
        yield running


def test_a_good_file_arrives_verified_with_progress(site, tmp_path):
    seen = []
    path = download(f"{site.url}/raw.csv", tmp_path / "raw.csv", DIGEST, len(PAYLOAD),
                    progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == PAYLOAD
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "raw.csv.part").exists()
    download(f"{site.url}/raw.csv", path, DIGEST)  # a verified copy is kept: no second request
    assert len(site.requests) == 1


def test_a_truncated_transfer_resumes_with_a_range_request(site, tmp_path):
    site.truncate_next = 300_000
    with pytest.raises(DataError, match="interrupted .*300,000 of 1,024,000 bytes.* run the same command"):
        download(f"{site.url}/raw.csv", tmp_path / "raw.csv", DIGEST, attempts=1)
    assert not (tmp_path / "raw.csv").exists()
    assert (tmp_path / "raw.csv.part").stat().st_size == 300_000
    path = download(f"{site.url}/raw.csv", tmp_path / "raw.csv", DIGEST)
    assert path.read_bytes() == PAYLOAD
    assert site.requests[-1] == ("/raw.csv", "bytes=300000-")


def test_an_interrupted_transfer_is_retried_within_one_call(site, tmp_path):
    site.truncate_next = 1000
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv", DIGEST).read_bytes() == PAYLOAD
    assert [r for _, r in site.requests] == [None, "bytes=1000-"]


def test_a_server_without_range_support_restarts_cleanly(site, tmp_path):
    site.ranges = False
    (tmp_path / "raw.csv.part").write_bytes(PAYLOAD[:5000])
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv", DIGEST).read_bytes() == PAYLOAD


def test_a_part_file_already_whole_is_only_verified(site, tmp_path):
    (tmp_path / "raw.csv.part").write_bytes(PAYLOAD)  # the server answers 416: nothing after the end
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv", DIGEST).read_bytes() == PAYLOAD


def test_a_wrong_checksum_is_a_clear_error_and_leaves_nothing(site, tmp_path):
    with pytest.raises(DataError, match=f"has sha256 {DIGEST}, the dataset card says 00ff"):
        download(f"{site.url}/raw.csv", tmp_path / "raw.csv", "00ff" * 16)
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_size_and_a_missing_file_are_clear_errors(site, tmp_path):
    with pytest.raises(DataError, match="gave 1,024,000 bytes, the dataset card says 1,000"):
        download(f"{site.url}/raw.csv", tmp_path / "raw.csv", size=1000)
    with pytest.raises(DataError, match="cannot download .*/absent.csv: HTTP 404"):
        download(f"{site.url}/absent.csv", tmp_path / "absent.csv")
    assert list(tmp_path.iterdir()) == []


def tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for member in members:
            data = b"x" if member.isfile() else None
            member.size = len(data) if data else 0
            bundle.addfile(member, io.BytesIO(data) if data else None)
    return path


def symlink(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.SYMTYPE, target
    return member


def test_archives_extract_once_into_their_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "nl.zip", "w") as bundle:
        bundle.writestr("nl/nl_user_train.csv", "1,2\n")
    tar_with(tmp_path / "raw_sample.csv.tar.gz", [tarfile.TarInfo("raw_sample.csv"), symlink("ok", "raw_sample.csv")])
    (tmp_path / "log.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    assert (extracted(tmp_path / "nl.zip", tmp_path / "nl") / "nl/nl_user_train.csv").read_text() == "1,2\n"
    folder = extracted(tmp_path / "raw_sample.csv.tar.gz", tmp_path / "raw")
    assert (folder / "raw_sample.csv").read_bytes() == b"x" and (folder / "ok").is_symlink()
    assert (extracted(tmp_path / "log.csv.gz", tmp_path / "log") / "log.csv").read_bytes() == b"a,b\n"


@pytest.mark.parametrize("member", [tarfile.TarInfo("../evil"), tarfile.TarInfo("/etc/evil"),
                                    tarfile.TarInfo("a/../../evil"), symlink("link", "../../etc/passwd"),
                                    symlink("link", "/etc/passwd")])
def test_a_malicious_tar_is_refused_and_nothing_is_written(tmp_path, member):
    archive = tar_with(tmp_path / "bad.tar.gz", [tarfile.TarInfo("fine.csv"), member])
    with pytest.raises(DataError, match="outside the folder it extracts to: refusing to extract"):
        extracted(archive, tmp_path / "out" / "bad")
    assert not (tmp_path / "evil").exists() and list((tmp_path / "out").iterdir()) == []


def test_a_malicious_zip_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as bundle:
        bundle.writestr("fine.csv", "1\n")
        bundle.writestr("../evil", "1\n")
    with pytest.raises(DataError, match="member '../evil', outside the folder"):
        extracted(tmp_path / "bad.zip", tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out").exists()


def test_a_damaged_archive_is_a_clear_error(tmp_path):
    (tmp_path / "cut.tar.gz").write_bytes(gzip.compress(b"not a tar at all" * 100)[:50])
    with pytest.raises(DataError, match="cut.tar.gz is damaged"):
        extracted(tmp_path / "cut.tar.gz", tmp_path / "out")


EVENTS = "user,item,country,clicked,day\n" + "".join(
    f"u{i % 7},i{i % 5},{'fr' if i % 3 else 'de'},{i % 2},{i % 10}\n" for i in range(200))


def shop_card(url: str, sha256: str | None) -> str:
    checksum = f'sha256 = "{sha256}"' if sha256 else ""
    return f'''name = "shop"
[tables.events]
path = "events.csv"
[label]
column = "clicked"
[scenario]
column = "country"
[features]
sparse = ["user", "item"]
user = "user"
[split]
by = "time"
time_column = "day"
time_unit = "s"
[source]
homepage = "https://example.com"
[[source.files]]
name = "events.csv"
url = "{url}"
size = {len(EVENTS)}
{checksum}
'''


def test_prepare_download_fetches_a_cards_public_files_then_prepares(tmp_path, monkeypatch):
    from mscbench.cli import main
    from mscbench.data import sources

    with serving(Site(files={"/events.csv": EVENTS.encode()})) as site:
        card = tmp_path / "shop.toml"
        card.write_text(shop_card(f"{site.url}/events.csv", hashlib.sha256(EVENTS.encode()).hexdigest()))
        monkeypatch.setitem(sources.SOURCES, "shop", sources.Source("shop", card, None, "a test card"))
        assert main(["prepare", "shop", "--download", "--data-dir", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data" / "raw" / "shop" / "events.csv").read_text() == EVENTS
    assert (tmp_path / "data" / "shop" / "default" / "manifest.json").is_file()
    assert main(["prepare", "synthetic", "--download", "--data-dir", str(tmp_path / "data")]) == 2
    assert main(["prepare", "alimama", "--download", "--data-dir", str(tmp_path / "data")]) == 2  # no address


# ------------------------------------------------------------------ downloads without a checksum (issue 16)


def test_without_a_checksum_a_cut_transfer_is_resumed_to_the_announced_length(site, tmp_path):
    site.truncate_next = 300_000
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv").read_bytes() == PAYLOAD
    assert [r for _, r in site.requests] == [None, "bytes=300000-"]


@pytest.mark.parametrize("cut", [300_000, None])
def test_a_server_announcing_no_length_cannot_give_an_unchecked_file(site, tmp_path, cut):
    site.announce_length, site.truncate_next = False, cut
    with pytest.raises(DataError, match="announced no length and the dataset card gives no sha256 or size: a cut "
                                        "transfer could not be told from a whole file, so it was deleted"):
        download(f"{site.url}/raw.csv", tmp_path / "raw.csv")
    assert list(tmp_path.iterdir()) == []
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv", size=len(PAYLOAD)).read_bytes() == PAYLOAD


def test_a_resume_answered_from_byte_0_restarts_the_file(site, tmp_path):
    site.resume_from = 0  # 206 with Content-Range bytes 0-...: the whole file again
    (tmp_path / "raw.csv.part").write_bytes(PAYLOAD[:5000])
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv").read_bytes() == PAYLOAD


def test_a_resume_answered_from_another_byte_starts_over_or_fails_clearly(site, tmp_path):
    site.resume_from = 1234
    (tmp_path / "raw.csv.part").write_bytes(PAYLOAD[:5000])
    with pytest.raises(DataError, match="asked to resume at byte 5,000, the server answered from byte 1,234: "
                                        "starting again.*run the same command again"):
        download(f"{site.url}/raw.csv", tmp_path / "raw.csv", attempts=1)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "raw.csv.part").write_bytes(PAYLOAD[:5000])
    assert download(f"{site.url}/raw.csv", tmp_path / "raw.csv").read_bytes() == PAYLOAD
    assert [r for _, r in site.requests[-2:]] == ["bytes=5000-", None]


def test_only_http_addresses_are_fetched(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("local")
    with pytest.raises(DataError, match="must be an http:// or https:// address"):
        download(secret.as_uri(), tmp_path / "raw" / "copy.txt")
    assert not (tmp_path / "raw").exists()


def test_card_check_warns_about_a_download_without_sha256(tmp_path):
    from mscbench.data.card import check_card_data, load_card

    card = tmp_path / "shop.toml"
    card.write_text(shop_card("https://example.com/events.csv", None))
    (tmp_path / "events.csv").write_text(EVENTS)
    report = check_card_data(load_card(card), tmp_path)
    assert [w for w in report.warnings if "sha256" in w] == [
        ("[source] file 'events.csv' has no sha256: a damaged or swapped download would go unnoticed; "
         "add sha256 = \"...\" (sha256sum events.csv)")]


# ---------------------------------------------------------------- a replaced archive is extracted again


def test_a_replaced_archive_is_extracted_again_even_with_the_same_size_and_mtime(tmp_path):
    archive = tmp_path / "log.csv.gz"
    archive.write_bytes(gzip.compress(b"a,b\n1,2\n", mtime=0))
    folder = extracted(archive, tmp_path / "cache" / "log")
    (folder / "marker").touch()
    assert extracted(archive, tmp_path / "cache" / "log") == folder and (folder / "marker").exists()  # kept
    status = archive.stat()
    archive.write_bytes(gzip.compress(b"a,b\n3,4\n", mtime=0))  # another archive, same size
    os.utime(archive, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert archive.stat().st_size == status.st_size
    assert (extracted(archive, tmp_path / "cache" / "log") / "log.csv").read_bytes() == b"a,b\n3,4\n"
    assert not (folder / "marker").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".log.source", "log"]
