"""Download and extraction against a local HTTP server on 127.0.0.1 serving archives built here."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest
from archives import file_member, link_member, make_tar

from cvtrain.data.download import Remote, extract, fetch
from cvtrain.data.oxford_pets import download
from cvtrain.errors import DataError

# A dataset-like archive: ~300 kB of incompressible bytes, so a half transfer is a real cut.
PAYLOAD = hashlib.sha256(b"seed").digest() * 10_000
GOOD_TAR = make_tar(
    [
        file_member("images/a.jpg", PAYLOAD),
        file_member("annotations/trimaps/a.png", b"mask"),
    ],
    mode="w",
)


def test_good_archive_downloads_verifies_and_extracts(server, tmp_path):
    remote = server.remote("/data/images.tar.gz", GOOD_TAR)
    download(tmp_path / "pets", (remote,))
    assert (tmp_path / "pets" / "images" / "a.jpg").read_bytes() == PAYLOAD
    assert (tmp_path / "pets" / "annotations" / "trimaps" / "a.png").read_bytes() == b"mask"
    archive = tmp_path / "pets" / ".downloads" / "images.tar.gz"
    assert archive.read_bytes() == GOOD_TAR
    assert not archive.with_name("images.tar.gz.part").exists()
    # A verified archive already on disk is not fetched again: the server sees no request.
    assert server.requests == [("/data/images.tar.gz", None)]
    assert fetch(remote, archive.parent) == archive
    assert server.requests == [("/data/images.tar.gz", None)]


def test_wrong_checksum_is_refused_and_nothing_extracted(server, tmp_path):
    remote = server.remote("/data/images.tar.gz", GOOD_TAR, sha256="0" * 64)
    with pytest.raises(DataError, match="failed its checksum"):
        download(tmp_path / "pets", (remote,))
    downloads = tmp_path / "pets" / ".downloads"
    assert list(downloads.iterdir()) == []  # neither the archive nor a .part is kept
    assert sorted(p.name for p in (tmp_path / "pets").iterdir()) == [".downloads"]


def test_download_cut_off_mid_transfer_is_resumed(server, tmp_path):
    remote = server.remote("/data/images.tar.gz", GOOD_TAR)
    server.cut_once.add("/data/images.tar.gz")
    with pytest.raises(DataError, match="next run resumes it"):
        download(tmp_path / "pets", (remote,))
    part = tmp_path / "pets" / ".downloads" / "images.tar.gz.part"
    assert part.stat().st_size == len(GOOD_TAR) // 2
    assert not (tmp_path / "pets" / "images").exists()  # a partial archive is never extracted

    download(tmp_path / "pets", (remote,))
    # The first transfer, then only the missing half asked for with a Range header.
    assert server.requests == [
        ("/data/images.tar.gz", None),
        ("/data/images.tar.gz", f"bytes={len(GOOD_TAR) // 2}-"),
    ]
    assert (tmp_path / "pets" / "images" / "a.jpg").read_bytes() == PAYLOAD
    assert not part.exists()


def test_complete_part_file_left_by_a_crash_is_verified_not_refetched(server, tmp_path):
    remote = server.remote("/data/images.tar.gz", GOOD_TAR)
    downloads = tmp_path / ".downloads"
    downloads.mkdir()
    (downloads / "images.tar.gz.part").write_bytes(GOOD_TAR)  # killed before the rename
    assert fetch(remote, downloads).read_bytes() == GOOD_TAR
    # One request, for the bytes after the end of the file (answered 416): nothing re-sent.
    assert server.requests == [("/data/images.tar.gz", f"bytes={len(GOOD_TAR)}-")]


def test_unreachable_server_is_one_clear_error(tmp_path):
    remote = Remote("http://127.0.0.1:9/none.tar", "0" * 64)
    with pytest.raises(DataError, match="cannot download http://127.0.0.1:9/none.tar"):
        fetch(remote, tmp_path, timeout=2)


def zip_bytes(name: str, data: bytes, mode: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return buf.getvalue()


MALICIOUS = {
    "tar-dotdot.tar": make_tar([file_member("ok.txt", b"fine"), file_member("../evil", b"x")]),
    "tar-absolute.tar": make_tar([file_member("ok.txt", b"x"), file_member("/tmp/evil", b"x")]),
    "tar-symlink.tar": make_tar([link_member("images", "../../outside"), file_member("x", b"")]),
    "tar-symlink-write.tar": make_tar(
        [link_member("escape", "../outside"), file_member("escape/evil", b"x")]
    ),
    "tar-hardlink.tar": make_tar([link_member("h", "../outside/evil", tarfile.LNKTYPE)]),
    "tar-device.tar": make_tar([link_member("dev", "", tarfile.CHRTYPE)]),
    "zip-dotdot.zip": zip_bytes("../evil", b"x"),
    "zip-absolute.zip": zip_bytes("/tmp/evil", b"x"),
    "zip-symlink.zip": zip_bytes("escape", b"../outside", mode=0o120777),
}


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_malicious_archives_are_refused_and_write_nothing(server, tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "data" / "pets"
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("already here")
    remote = server.remote(f"/{name}", MALICIOUS[name])

    with pytest.raises(DataError, match=f"refusing to extract {name}"):
        extract(fetch(remote, tmp_path / "downloads"), target)

    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert list(outside.iterdir()) == []
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert written == {"outside", "data", "data/pets", "data/pets/keep.txt", "downloads",
                       f"downloads/{name}"}  # fmt: skip
