"""trainer.loop=custom: the epoch loop written out, so it runs under any tf.distribute strategy.

Keras 3's fit() cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585; on TF 2.21
it fails converting a PerReplica value to a Tensor). The model's own train_step and test_step
do work there: Keras scales the loss per replica and the optimizer all-reduces the gradients.
So this loop calls them through strategy.run and drives the same Keras callbacks fit() would.
Metrics are read outside strategy.run, where their state is summed over every replica and
worker, so every worker sees the same global loss and metrics.

Workers must take every collective step together, so they agree on stopping through a
collective too: each step all-reduces which signals (SIGINT/SIGTERM) any worker received, and
all of them stop after that same step. (tf.distribute's
PreemptionCheckpointHandler would also agree on a step, but saves a mid-epoch tf.train
checkpoint in its own format beside the run's per-epoch resume state, which it cannot replace.)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import keras
import tensorflow as tf

from cvtrain.training.cluster import cluster_size
from cvtrain.training.distribute import distributed_dataset
from cvtrain.training.inputs import Inputs
from cvtrain.training.interrupt import SIGNALS, Interrupted, SignalTrap

log = logging.getLogger(__name__)


def _logs(model: keras.Model, prefix: str = "") -> dict[str, float]:
    """Global metric values (the cross-replica read sums state over all replicas/workers)."""
    return {prefix + k: float(v) for k, v in model.get_metrics_result().items()}


def weights_digest(model: keras.Model) -> str:
    """A short hash of every weight: workers in step print the same one."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(keras.ops.convert_to_numpy(weight).tobytes())
    return digest.hexdigest()[:16]


def _signals_sent(trap: SignalTrap) -> tf.Tensor:
    return tf.constant([int(trap.signum == s) for s in SIGNALS])


def _stop_if_signalled(counts: tf.Tensor, trap: SignalTrap, epoch: int, where: str) -> None:
    """Raise `Interrupted` on every worker once any of them received a signal."""
    received = [s for s, n in zip(SIGNALS, counts.numpy()) if n]
    if received:
        signum = max(received)  # SIGTERM (preemption) over SIGINT
        peer = "" if trap.signum == signum else " (sent to another worker)"
        raise Interrupted(signum, epoch + 1, f"{peer} at {where}")


def _batches(dataset, steps: int | None, iterator: Iterator | None) -> Iterator:
    """`steps` batches from a persistent iterator (repeated data), else one pass over `dataset`."""
    if steps is None:
        yield from dataset
        return
    for _ in range(steps):
        yield next(iterator)


def _replica_steps(model: keras.Model, strategy: tf.distribute.Strategy) -> tuple:
    """The model's train_step and test_step on every replica, each returning how many signals
    any worker received (one collective, so all of them stop after the same step)."""
    with strategy.scope():  # variables created inside a replica's step would not be mirrored
        model.optimizer.build(model.trainable_variables)

    def signals_on_any_worker(signals):
        per_replica = strategy.run(tf.identity, args=(signals,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    @tf.function(reduce_retracing=True)
    def train_step(batch, signals):
        strategy.run(model.train_step, args=(batch,))
        return signals_on_any_worker(signals)

    @tf.function(reduce_retracing=True)
    def test_step(batch, signals):
        strategy.run(model.test_step, args=(batch,))
        return signals_on_any_worker(signals)

    return train_step, test_step


def fit(
    model: keras.Model,
    inputs: Inputs,
    *,
    epochs: int,
    initial_epoch: int,
    callbacks: list[keras.callbacks.Callback],
    trap: SignalTrap,
    strategy: tf.distribute.Strategy,
) -> None:
    """Train like model.fit(train, validation_data=val), from the same inputs.

    Each worker reads only its own shard of the files (see distribute.distributed_dataset).
    A signal in `trap` on any worker raises `Interrupted` on all, after the same step.
    """
    cfg = inputs.cfg
    steps = cfg.trainer.steps_per_epoch
    data = dict(seed=cfg.trainer.seed, cache_dir=inputs.cache_dir)
    train_data = distributed_dataset(
        strategy, inputs.split.train, cfg.data, training=True, repeat=bool(steps), **data
    )
    val_data = distributed_dataset(strategy, inputs.split.val, cfg.data, training=False, **data)

    train_step, test_step = _replica_steps(model, strategy)
    hooks = keras.callbacks.CallbackList(
        callbacks, model=model, epochs=epochs, steps=steps, verbose=0
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
            signalled = train_step(batch, _signals_sent(trap))
            hooks.on_train_batch_end(step, _logs(model))
            _stop_if_signalled(signalled, trap, epoch, f"step {step + 1}")
        logs = _logs(model)
        model.reset_metrics()
        for step, batch in enumerate(val_data):
            signalled = test_step(batch, _signals_sent(trap))
            _stop_if_signalled(signalled, trap, epoch, f"validation step {step + 1}")
        logs.update(_logs(model, prefix="val_"))
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    if cluster_size() > 1:
        log.info("final weights sha256 %s (the same on every worker)", weights_digest(model))
