"""The real Oxford-IIIT Pet sample in ../shared (skipped when absent, a failure under CI=true)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_config, require_real_sample
from helpers import checkpoint_scores

from cvtrain import rundir
from cvtrain.data.index import sniff_image
from cvtrain.data.sources import load_index, load_split


def test_all_pairs_indexed_and_lying_files_decode(real_sample):
    from cvtrain.data.pipeline import decode_image, decode_pair

    cfg = make_config("data=oxford_pets", f"data.root={real_sample}")
    index, dropped = load_index(cfg.data, "segmentation")
    assert len(index) == 451 and dropped == []
    by_name = {p.rsplit("/", 1)[-1]: p for p in index.images}
    assert sniff_image(by_name["Abyssinian_34.jpg"]) == "gif"
    assert sniff_image(by_name["Abyssinian_5.jpg"]) == "png"
    for name in ("Abyssinian_34.jpg", "Abyssinian_5.jpg"):
        image = decode_image(by_name[name], (64, 64)).numpy()
        assert image.shape == (64, 64, 3) and image.std() > 1
    values = set()
    for image, mask in list(zip(index.images, index.targets))[::15]:
        values |= set(np.unique(decode_pair(image, mask, (64, 64), index)[1].numpy()))
    assert values == {0, 1, 2}


@pytest.mark.slow
def test_one_epoch_at_64px_completes(real_run):
    import keras

    from cvtrain.data.pipeline import decode_image

    run_dir, overrides = real_run  # conftest's: one epoch at 64 px, shared with test_predict.py
    cfg = make_config(*overrides)
    split, _ = load_split(cfg.data, "segmentation")
    assert (len(split.train), len(split.val)) == (400, 51)
    metrics = rundir.read_json(run_dir / rundir.METRICS)
    assert metrics["epochs_run"] == metrics["best_epoch"] == 1
    assert np.isfinite(metrics["best_val_loss"])
    assert (run_dir / "checkpoints" / "best.keras").is_file()

    model = keras.models.load_model(run_dir / "checkpoints" / "best.keras")
    images = np.stack([decode_image(p, (64, 64)).numpy() for p in split.val.images[:2]])
    masks = model.predict(images.astype(np.float32), verbose=0)
    assert masks.shape == (2, 64, 64, 3)  # pet, background, border per pixel
    np.testing.assert_allclose(masks.sum(-1), 1.0, rtol=1e-4)
    logged = metrics["best_val_loss"]
    assert checkpoint_scores(run_dir, cfg, split)["loss"] == pytest.approx(logged, rel=1e-3)


def test_missing_real_sample_skips_locally_but_fails_under_ci(tmp_path):
    missing = tmp_path / "oxford_pets_sample"

    def outcome(environ: dict[str, str]) -> str:
        try:
            require_real_sample(missing, environ)
        except pytest.skip.Exception:
            return "skip"
        except pytest.fail.Exception as failed:
            assert "CI=true" in str(failed)
            return "fail"
        return "run"

    environs = ({}, {"CI": "false"}, {"CI": "true"}, {"CI": "1"})
    assert [outcome(e) for e in environs] == ["skip", "skip", "fail", "fail"]
    (missing / "images").mkdir(parents=True)
    assert [outcome(e) for e in environs] == ["run"] * 4
