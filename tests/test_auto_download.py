"""Datasets with a known archive download a missing root by default (data.download=true),
against a local HTTP server on 127.0.0.1 standing in for the official URLs."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import pytest
from archives import ArchiveServer, file_member, make_tar
from conftest import make_config
from PIL import Image

from cvtrain.data import cats_vs_dogs, oxford_pets
from cvtrain.data.download import Remote
from cvtrain.data.sources import load_index
from cvtrain.errors import DataError


def image_bytes(fmt: str, mode: str = "RGB", value: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (16, 16), value).save(buffer, fmt)
    return buffer.getvalue()


def serve_pets(server: ArchiveServer, monkeypatch) -> None:
    """Both official Oxford archives, two pets each, served locally in place of the real URLs."""
    stems = ("Abyssinian_1", "beagle_2")
    images = make_tar([file_member(f"images/{s}.jpg", image_bytes("JPEG")) for s in stems])
    trimaps = [
        file_member(f"annotations/trimaps/{s}.png", image_bytes("PNG", "L", 2)) for s in stems
    ]
    archives = (
        server.remote("/pets/images.tar.gz", images),
        server.remote("/pets/annotations.tar.gz", make_tar(trimaps)),
    )
    monkeypatch.setattr(oxford_pets, "ARCHIVES", archives)


@pytest.mark.parametrize(
    "source", ["oxford_pets", "oxford_pets_species", "oxford_pets_breeds", "cats_vs_dogs"]
)
def test_every_source_with_an_archive_downloads_by_default(source):
    task = "segmentation" if source == "oxford_pets" else "classification"
    assert make_config(f"task={task}", f"data={source}").data.download is True


def test_missing_root_is_downloaded_with_default_settings(server, tmp_path, monkeypatch):
    serve_pets(server, monkeypatch)
    root = tmp_path / "pets"
    index, _ = load_index(
        make_config("task=segmentation", f"data.root={root}").data, "segmentation"
    )
    assert [p.rsplit("/", 1)[-1] for p in index.images] == ["Abyssinian_1.jpg", "beagle_2.jpg"]
    assert [path for path, _ in server.requests] == [
        "/pets/images.tar.gz",
        "/pets/annotations.tar.gz",
    ]
    assert (root / "annotations" / "trimaps" / "beagle_2.png").is_file()


def test_missing_cats_vs_dogs_is_downloaded_with_default_settings(server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("PetImages/Cat/0.jpg", image_bytes("JPEG", value=30))
        zf.writestr("PetImages/Dog/0.jpg", image_bytes("JPEG", value=200))
    body = buffer.getvalue()
    server.files["/cats.zip"] = body
    monkeypatch.setattr(cats_vs_dogs, "ARCHIVE", Remote(server.url("/cats.zip"), None, len(body)))
    (tmp_path / "cats").mkdir()  # an empty folder counts as missing
    cfg = make_config("task=classification", f"data.root={tmp_path / 'cats'}")
    index, _ = load_index(cfg.data, "classification")
    assert index.class_names == ("Cat", "Dog") and sorted(index.targets) == [0, 1]


def test_download_false_refuses_with_one_line_and_fetches_nothing(server, tmp_path, monkeypatch):
    serve_pets(server, monkeypatch)
    root = tmp_path / "pets"
    cfg = make_config("task=segmentation", f"data.root={root}", "data.download=false")
    with pytest.raises(DataError) as info:
        load_index(cfg.data, "segmentation")
    message = str(info.value)
    assert "\n" not in message
    assert f"not found in {root} and data.download=false: put the files in {root}" in message
    assert "data=synthetic_pets" in message and "data.download=true" in message
    assert server.requests == [] and not root.exists()


def test_a_folder_with_other_files_is_never_downloaded_into(server, tmp_path, monkeypatch):
    serve_pets(server, monkeypatch)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.jpg").write_bytes(b"the user's own file")
    with pytest.raises(DataError, match="holds other files"):
        load_index(make_config("task=segmentation", f"data.root={tmp_path}").data, "segmentation")
    assert server.requests == []
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["mine.jpg"]


# `cvtrain` with the Oxford URLs pointing at a closed port on 127.0.0.1 (nothing listens on 9).
OFFLINE = """
import sys
from cvtrain.data import oxford_pets
from cvtrain.data.download import Remote
oxford_pets.ARCHIVES = (Remote("http://127.0.0.1:9/images.tar.gz", "0" * 64, 10),)
sys.argv = ["cvtrain", *sys.argv[1:]]
from cvtrain.cli.main import main
main()
"""


@pytest.mark.slow
def test_unreachable_server_is_one_line_saying_what_to_do(tmp_path):
    root = tmp_path / "pets"
    args = ["task=segmentation", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("cvtrain: error: Oxford-IIIT Pet")
    assert "cannot download http://127.0.0.1:9/images.tar.gz" in line
    assert f"put the files in {root}" in line and "data=synthetic_pets" in line
    assert "data.download=false" in line
    assert not (tmp_path / "run").exists()


def test_the_oxford_download_is_811_mb():
    """The size the README and the data configs give for Oxford-IIIT Pet."""
    assert round(sum(archive.size for archive in oxford_pets.ARCHIVES) / 1e6) == 811
