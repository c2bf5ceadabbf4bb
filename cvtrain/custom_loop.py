"""trainer.loop=custom: the epoch loop written out, so it runs under any tf.distribute strategy.

Keras 3's fit() cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585; on TF 2.21
it fails converting a PerReplica value to a Tensor). The model's own train_step and test_step
do work there: Keras scales the loss per replica and the optimizer all-reduces the gradients.
So this loop calls them through strategy.run and drives the same Keras callbacks fit() would.
Metrics are read outside strategy.run, where their state is summed over every replica and
worker, so every worker sees the same global loss and metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import tensorflow as tf

from cvtrain.config import RunConfig
from cvtrain.data.index import Split
from cvtrain.distribute import distributed_dataset


def _logs(model: keras.Model, prefix: str = "") -> dict[str, float]:
    """Global metric values (the cross-replica read sums state over all replicas/workers)."""
    return {prefix + k: float(v) for k, v in model.get_metrics_result().items()}


def _batches(dataset, steps: int | None, iterator: Iterator | None) -> Iterator:
    """`steps` batches from a persistent iterator (repeated data), else one pass over `dataset`."""
    if steps is None:
        yield from dataset
        return
    for _ in range(steps):
        yield next(iterator)


def fit(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    split: Split,
    cfg: RunConfig,
    *,
    cache_dir: Path,
    epochs: int,
    initial_epoch: int,
    callbacks: list[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    """Train like model.fit(train, validation_data=val); return this call's per-epoch history.

    Each worker reads only its own shard of the files (see distribute.distributed_dataset).
    """
    steps = cfg.trainer.steps_per_epoch
    data = dict(seed=cfg.trainer.seed, cache_dir=cache_dir)
    train_data = distributed_dataset(
        strategy, split.train, cfg.data, training=True, repeat=bool(steps), **data
    )
    val_data = distributed_dataset(strategy, split.val, cfg.data, training=False, **data)

    with strategy.scope():  # variables created inside a replica's step would not be mirrored
        model.optimizer.build(model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))

    @tf.function(reduce_retracing=True)
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList(
        [*callbacks, history], model=model, epochs=epochs, steps=steps, verbose=0
    )
    iterator = iter(train_data) if steps else None
    model.stop_training = False
    hooks.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        for step, batch in enumerate(_batches(train_data, steps, iterator)):
            hooks.on_train_batch_begin(step)
            train_step(batch)
            hooks.on_train_batch_end(step, _logs(model))
        logs = _logs(model)
        model.reset_metrics()
        for batch in val_data:
            test_step(batch)
        logs.update(_logs(model, prefix="val_"))
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return history.history
