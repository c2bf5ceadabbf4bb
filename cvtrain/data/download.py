"""Fetch archives over HTTP(S) and unpack them without trusting their contents.

A download is written to `<name>.part`, resumed with a Range request after an interruption,
checked against its sha256 and only then renamed into place; nothing unverified is extracted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cvtrain.console import console
from cvtrain.errors import DataError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str
    size: int | None = None

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(remote: Remote, dest_dir: Path, *, timeout: float = 30.0) -> Path:
    """Download `remote` into `dest_dir` (resuming a partial file) and verify it."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.filename
    if dest.exists() and sha256_of(dest) == remote.sha256:
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        _download_to(remote, part, timeout)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {remote.url} ({reason}); the partial file is kept in {part} and "
            "the next run resumes it"
        ) from None
    digest = sha256_of(part)
    if digest != remote.sha256:
        part.unlink()
        raise DataError(
            f"{remote.url} failed its checksum (sha256 {digest[:12]}..., expected "
            f"{remote.sha256[:12]}...); the file was deleted, run again to re-download it"
        )
    os.replace(part, dest)
    return dest


def _download_to(remote: Remote, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "cvtrain"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else remote.size
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with (
            Progress(*columns, console=console) as progress,
            open(part, "ab" if resumed else "wb") as out,
        ):
            task = progress.add_task(remote.filename, total=total, completed=have)
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                progress.advance(task, len(chunk))


def extract(archive: Path, target: Path) -> None:
    """Unpack a tar (any compression) or zip into `target`, refusing unsafe members.

    Members are unpacked into a temporary sibling folder first, so a refused archive leaves
    `target` untouched.
    """
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".extract-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        else:
            _extract_tar(archive, staging)
        for item in staging.iterdir():
            dest = target / item.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(item, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise DataError(f"refusing to extract {archive.name}: {exc}") from None
    except tarfile.TarError as exc:
        raise DataError(f"{archive.name} is not a readable archive ({exc})") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            mode = info.external_attr >> 16
            out = (dest / name).resolve()
            if name.startswith(("/", "\\")) or ":" in name.split("/")[0]:
                raise DataError(f"refusing to extract {archive.name}: absolute path {name!r}")
            if not out.is_relative_to(root):
                raise DataError(f"refusing to extract {archive.name}: {name!r} leaves the target")
            if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise DataError(f"refusing to extract {archive.name}: {name!r} is a link or device")
        zf.extractall(dest)
