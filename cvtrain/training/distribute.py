"""Which tf.distribute strategy a run trains under, and how its data is split across workers.

`data.batch_size` is always the global batch: every strategy splits it across its replicas, so
going from one GPU to N keeps the optimisation the same (scale `optimizer.lr` yourself if you
also raise the batch; see the README's Performance section).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import tensorflow as tf

from cvtrain.config.schema import DataConfig, TrainerConfig
from cvtrain.data.index import FileIndex
from cvtrain.data.pipeline import build_dataset
from cvtrain.errors import ConfigError, UserError
from cvtrain.training.cluster import cluster_size, slurm_cluster, tf_config_workers


def strategy_name(cfg: TrainerConfig, num_gpus: int) -> str:
    """auto: multi_worker in a cluster of >1 workers (TF_CONFIG or an srun step), mirrored
    with >1 GPU, else one_device."""
    name = cfg.strategy
    if name == "auto":
        if cluster_size() > 1:
            name = "multi_worker"
        else:
            name = "mirrored" if num_gpus > 1 else "one_device"
    if name == "multi_worker" and cfg.loop == "fit":
        raise ConfigError(
            f"trainer.loop=fit cannot run under MultiWorkerMirroredStrategy ({cluster_size()} "
            "workers from TF_CONFIG or srun; Keras 3 fit() does not support it); "
            "use trainer.loop=custom"
        )
    if name == "multi_worker" and not cluster_size():
        raise ConfigError(
            "trainer.strategy=multi_worker needs TF_CONFIG describing the cluster "
            '(e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}) or an srun step of several tasks'
        )
    return name


def make_strategy(cfg: TrainerConfig) -> tf.distribute.Strategy:
    """The strategy to build and compile the model under (`with strategy.scope()`)."""
    gpus = tf.config.list_physical_devices("GPU")
    name = strategy_name(cfg, len(gpus))
    if name == "multi_worker":
        resolver = None  # TF_CONFIG, read by TF's default TFConfigClusterResolver
        if not tf_config_workers():
            spec = slurm_cluster(cfg.port)
            resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
                tf.train.ClusterSpec(spec["cluster"]),
                task_type="worker",
                task_id=spec["task"]["index"],
                num_accelerators={"GPU": len(gpus)},  # every GPU of the task's node
                rpc_layer="grpc",
            )
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if name == "mirrored":
        # All GPUs; on a CPU-only machine every logical CPU device (one unless configured).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()  # TF's default: one device, no distribution overhead


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes the run directory (worker 0 unless a chief exists)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    jobs = resolver.cluster_spec().jobs
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs


def check_same_epoch(strategy: tf.distribute.Strategy, epoch: int) -> None:
    """Every worker resumes from the same epoch, or all of them stop with the same error."""
    mine = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([epoch]))
    found = sorted(set(strategy.gather(mine, axis=0).numpy().tolist()))
    if len(found) > 1:
        raise UserError(
            f"the workers found different resume states (epochs {found}): the run dir must be "
            "on a filesystem every worker sees (or give each a copy of the chief's)"
        )


def even_shard(index: FileIndex, shard: int, num_shards: int) -> FileIndex:
    """Every `num_shards`-th sample from `shard`, all shards the same length.

    Collective training hangs if one worker runs out of batches before the others, so the
    up to num_shards - 1 samples left over are dropped.
    """
    per_shard = len(index) // num_shards
    if per_shard < 1:
        raise ConfigError(f"{len(index)} samples cannot be split across {num_shards} workers")
    return index.take(range(shard, per_shard * num_shards, num_shards))


def distributed_dataset(
    strategy: tf.distribute.Strategy,
    index: FileIndex,
    cfg: DataConfig,
    *,
    training: bool,
    seed: int,
    cache_dir: Path,
    repeat: bool = False,
) -> tf.distribute.DistributedDataset:
    """One input pipeline per worker over its own shard of files, batched per replica."""
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise ConfigError(
            f"data.batch_size={cfg.batch_size} is the global batch and must divide evenly "
            f"across {replicas} replicas; use a multiple of {replicas}"
        )

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = even_shard(index, ctx.input_pipeline_id, ctx.num_input_pipelines)
        per_replica = replace(cfg, batch_size=ctx.get_per_replica_batch_size(cfg.batch_size))
        worker_cache = cache_dir / f"worker{ctx.input_pipeline_id}"
        ds = build_dataset(shard, per_replica, training=training, seed=seed, cache_dir=worker_cache)
        return ds.repeat() if repeat else ds

    return strategy.distribute_datasets_from_function(dataset_fn)
