"""Fetch archives over HTTP(S) and unpack them without trusting their contents.

A download is written to `<name>.part`, resumed with a Range request after an interruption,
checked against its sha256 and only then renamed into place; nothing unverified is extracted.
"""

from __future__ import annotations

import hashlib
import http.client
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


class DownloadFailed(DataError):
    """The server could not be reached or the transfer broke off (offline, proxy, outage)."""


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str | None  # None where none is published: then the size must match
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
    if dest.exists() and mismatch(dest, remote) is None:
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        _download_to(remote, part, timeout)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        kept = part.exists() and part.stat().st_size > 0
        resume = f"; the partial file is kept in {part} and the next run resumes it" if kept else ""
        raise DownloadFailed(f"cannot download {remote.url} ({reason}){resume}") from None
    problem = mismatch(part, remote)
    if problem:
        part.unlink()
        raise DataError(
            f"{remote.url} failed its checksum ({problem}); the file was deleted, run again to "
            "re-download it"
        )
    os.replace(part, dest)
    return dest


def download_all(root: Path, archives: tuple[Remote, ...]) -> None:
    """Fetch, verify and unpack each archive into `root` (kept in root/.downloads)."""
    for remote in archives:
        extract(fetch(remote, root / ".downloads"), root)


def download_missing(
    root: Path, archives: tuple[Remote, ...], *, allowed: bool, what: str, offline: str
) -> None:
    """Download a dataset (`what`: its name and layout) into a `root` that lacks it, unless
    data.download=false. A folder holding anything but an earlier download of ours is never
    written to: the archives would replace what is there. Each refusal lists the ways forward."""
    fixes = f"put the files in {root}, point data.root at a copy, or train offline with {offline}"
    if root.is_dir() and any(root.iterdir()) and not (root / ".downloads").is_dir():
        raise DataError(
            f"{what} not found in {root}, which holds other files (nothing is "
            f"downloaded into it): {fixes}"
        )
    if not allowed:
        size = sum(remote.size or 0 for remote in archives)
        raise DataError(
            f"{what} not found in {root} and data.download=false: {fixes}; "
            f"or set data.download=true to fetch it ({size / 1e6:,.0f} MB)"
        )
    try:
        download_all(root, archives)
    except DownloadFailed as exc:
        raise DownloadFailed(
            f"{what} is not in {root} and {exc}: check the network and run again, {fixes} "
            "(data.download=false stops cvtrain from trying)"
        ) from None


def mismatch(path: Path, remote: Remote) -> str | None:
    """How `path` differs from the published file, or None if it matches."""
    if remote.sha256 is None:
        assert remote.size is not None, "a Remote without sha256 needs its size"
        size = path.stat().st_size
        return None if size == remote.size else f"{size:,} bytes, expected {remote.size:,}"
    digest = sha256_of(path)
    if digest == remote.sha256:
        return None
    return f"sha256 {digest[:12]}..., expected {remote.sha256[:12]}..."


def _download_to(remote: Remote, part: Path, timeout: float) -> None:
    """Append the missing bytes to `part`; raise OSError if the transfer ends short."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "cvtrain"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: a crash hit before the rename
            return
        raise
    with response:
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
                have += len(chunk)
                progress.advance(task, len(chunk))
    if total is not None and have < total:  # http.client ends a cut-off body without an error
        raise OSError(f"connection closed after {have:,} of {total:,} bytes")


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


def _check_name(archive: Path, name: str, dest: Path) -> None:
    """Refuse absolute member names and names that resolve outside `dest`, tar and zip alike.

    (tarfile's "data" filter would silently strip a leading slash; we refuse the archive.)
    """
    if name.startswith(("/", "\\")) or ":" in name.split("/")[0]:
        raise DataError(f"refusing to extract {archive.name}: absolute path {name!r}")
    if not (dest / name).resolve().is_relative_to(dest.resolve()):
        raise DataError(f"refusing to extract {archive.name}: {name!r} leaves the target")


def _extract_tar(archive: Path, dest: Path) -> None:
    """Links out of `dest` and device files are refused by tarfile's "data" filter."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                _check_name(archive, member.name, dest)
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise DataError(f"refusing to extract {archive.name}: {exc}") from None
    except tarfile.TarError as exc:
        raise DataError(f"{archive.name} is not a readable archive ({exc})") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            mode = info.external_attr >> 16
            _check_name(archive, name, dest)
            if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise DataError(f"refusing to extract {archive.name}: {name!r} is a link or device")
        try:
            zf.extractall(dest)  # checks each member's CRC-32
        except zipfile.BadZipFile as exc:
            raise DataError(f"{archive} is corrupt ({exc}); delete it and run again") from None
