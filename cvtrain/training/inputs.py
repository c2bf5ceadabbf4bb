"""What both training loops read: the split, and the tf.data pipelines built from it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import tensorflow as tf

from cvtrain import rundir
from cvtrain.config.schema import RunConfig
from cvtrain.data.index import FileIndex, Split
from cvtrain.data.pipeline import build_dataset, steps_per_epoch


@dataclass
class Inputs:
    """What both training loops read: the split and how to batch it (each loop builds its
    datasets from these: plain for Keras fit, per-worker shards for the custom loop)."""

    split: Split
    cfg: RunConfig
    cache_dir: Path
    steps: int  # batches per epoch: the progress bar's and the learning-rate schedule's

    @cached_property
    def train(self) -> tf.data.Dataset:
        ds = self._dataset(self.split.train, training=True)
        return ds.repeat() if self.fit_steps else ds

    @cached_property
    def val(self) -> tf.data.Dataset:
        """One pipeline (one cache) for validation, the epoch pictures and the samples."""
        return self._dataset(self.split.val, training=False)

    def _dataset(self, index: FileIndex, training: bool) -> tf.data.Dataset:
        data, seed = self.cfg.data, self.cfg.trainer.seed
        return build_dataset(index, data, training=training, seed=seed, cache_dir=self.cache_dir)

    @property
    def fit_steps(self) -> int | None:
        """Steps Keras fit is told per epoch. Running one step per call over a dataset of
        unknown size (ignore_errors hides it), Keras 3.15 counts an optimizer step more than
        it ran each epoch, ending a schedule early: give it the steps of a repeated dataset.
        (More steps per call stop cleanly at the end.)"""
        if self.cfg.trainer.steps_per_execution == 1:
            return self.steps
        return self.cfg.trainer.steps_per_epoch


def build_inputs(cfg: RunConfig, split: Split, run_dir: Path) -> Inputs:
    steps = cfg.trainer.steps_per_epoch or steps_per_epoch(len(split.train), cfg.data.batch_size)
    return Inputs(split, cfg, run_dir / rundir.CACHE, steps)
