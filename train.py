"""Train the configured model (``python train.py --help`` lists every option).

    python train.py --config_path default_config_cpu.yaml --data_path DIR --output_path DIR
"""
import os
import sys

from src.config import load_config
from src.engine.cli import run_main
from src.engine.errors import TrainingDiverged


# keys of evaluation, export and inference: --help leaves them out
NOT_USED = ("ckpt_file", "eval_split", "file_name", "file_format", "export_batch_size",
            "infer_data_path", "result_path")


def _resume_checkpoint(cfg, prefix):
    """The newest periodic checkpoint to resume from (the run folder was
    claimed: it holds this model's run on this data, or none)."""
    if not cfg.resume:
        return None
    from src.engine import checkpoint
    existing = checkpoint.periodic_checkpoints(cfg.output_path, prefix)
    if not existing:
        print(f"resume: no checkpoint {prefix}-*.ckpt in {cfg.output_path}; starting from scratch")
        return None
    return existing[-1]


def _training_splits(cfg):
    """``train_splits`` checked: the train split first, each split once."""
    from src.config import ConfigError
    splits = list(cfg.train_splits or [])
    if not splits or splits[0] != "train" or len(set(splits)) < len(splits):
        raise ConfigError(f"train_splits must be train, or train,val; got {','.join(splits)}")
    return splits


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv, shown=lambda key, kind: key not in NOT_USED)
    splits = _training_splits(cfg)
    # MindSpore loads only now: --help and bad options answer at once
    from src.engine.distributed import init_cluster, scale_for_cluster
    from src.engine.run_folder import RunFolder
    from src.engine.runtime import setup_runtime
    from src.pipeline import model_and_data
    setup_runtime(cfg)
    cluster = init_cluster(cfg)
    if cluster.distributed:   # the launcher reports failed workers by pid
        print(f"rank {cluster.rank} of {cluster.size}: pid {os.getpid()}", flush=True)
    note = scale_for_cluster(cfg, cluster)
    if note:
        print(note, flush=True)
    spec, fmap = model_and_data(cfg)
    prefix = spec.name
    folder = None
    if cluster.is_main:        # rank 0 alone writes the run folder
        folder = RunFolder(cfg.output_path, spec.name, fmap["fingerprint"]).claim(
            resume=cfg.resume, replace=cfg.replace_run)
    try:
        return _train(cfg, cluster, spec, fmap, prefix, folder, splits)
    except TrainingDiverged:
        if folder and folder.started:
            folder.set_status("diverged")
        raise
    except BaseException as exc:
        if folder and folder.started:
            folder.set_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                              error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    finally:
        if folder:
            folder.release()


def _train(cfg, cluster, spec, fmap, prefix, folder, splits):
    from src.engine import checkpoint
    from src.engine.callbacks import (BestCheckpoint, EarlyStopping, Evaluator, MetricsLog,
                                      PeriodicCheckpoint, ProgressLogger, StepLog)
    from src.engine.setup import build_network, split_reader
    from src.engine.summary import SummaryLog
    from src.engine.trainer import Trainer
    resume_path = _resume_checkpoint(cfg, prefix)
    network = build_network(spec, cfg, fmap)
    refit = "val" in splits       # a final fit: the validation rows train too
    train_data = split_reader(spec, fmap, cfg, splits, training=True,
                              num_shards=cluster.size, shard_id=cluster.rank,
                              transform=spec.train_transform(fmap, network, cfg, cluster.distributed))
    val_data = None if refit else split_reader(spec, fmap, cfg, "val",
                                               transform=spec.eval_transform(fmap, network))
    where = f"rank {cluster.rank} of {cluster.size}, " if cluster.distributed else ""
    built = f" built from {fmap['raw_dir']}" if fmap.get("raw_dir") else ""   # e.g. Fashion-MNIST
    validation = ("no validation: the validation rows train too (train_splits train,val)"
                  + ("; early_stopping_patience is ignored" if cfg.early_stopping_patience else "")
                  if refit else f"{val_data.num_rows} validation rows")
    print(f"model {spec.name} on {spec.dataset.title} data in {cfg.data_path}{built}: "
          f"{train_data.num_rows} training rows "
          f"({where}{len(train_data)} steps/epoch), {validation}, "
          f"device {cfg.device_target}", flush=True)
    trainer = Trainer(spec, cfg, fmap, network, len(train_data), is_main=cluster.is_main)
    if trainer.steps_per_call > 1:
        print(f"{trainer.steps_per_call} training steps per graph call (steps_per_call)", flush=True)
    if resume_path:
        trainer.resume_from(resume_path)
    if cluster.is_main:
        cfg.dump(os.path.join(cfg.output_path, "config.yaml"))

    # rank 0 alone writes logs; every rank evaluates the whole validation split,
    # so all ranks take the same best-checkpoint and early-stopping decisions
    log_path = os.path.join(cfg.output_path, "metrics.jsonl")
    # a sharded table's checkpoints: every rank writes its shard
    saving = bool(cfg.save_checkpoint) and (cluster.is_main or trainer.checkpoint_shard() is not None)
    best_ckpt = BestCheckpoint(cfg.output_path, cfg.best_ckpt_metrics, log_path=log_path,
                               active=saving)
    summary = SummaryLog(os.path.join(cfg.output_path, "summary"), cfg.log_every_steps,
                         active=cluster.is_main and bool(cfg.summary))
    periodic = PeriodicCheckpoint(cfg.output_path, prefix, cfg.save_checkpoint_epochs,
                                  cfg.keep_checkpoint_max, active=saving)
    selection = [] if refit else [
        Evaluator(val_data, cfg.eval_interval),
        best_ckpt,
        EarlyStopping(cfg.monitor, cfg.early_stopping_patience, log_path=log_path),
    ]
    callbacks = [
        ProgressLogger(cfg.log_every_steps),
        *selection,
        MetricsLog(log_path, active=cluster.is_main),
        StepLog(os.path.join(cfg.output_path, "steps.jsonl"),
                active=cluster.is_main and bool(cfg.step_log)),
        summary,
        periodic,
    ]
    if folder:
        folder.start()
    try:
        state = trainer.fit(train_data, callbacks)
    finally:
        summary.close()                 # the summary writer's processes end with the run
    if folder:
        folder.set_status("finished", epoch=state.epoch, stop_reason=state.stop_reason)
    best = ", ".join(f"{m}={v:.6f}" for m, v in best_ckpt.best.items() if v is not None)
    print("training finished after epoch {}{}; {}".format(
        state.epoch, f" ({state.stop_reason})" if state.stop_reason else "",
        "no validation (train_splits train,val)" if refit else f"best validation: {best}"),
        flush=True)
    if cluster.distributed:   # equal on every rank when the data-parallel ranks stayed in step
        own = ([p.name for p in network.get_parameters() if p.layerwise_parallel]
               if trainer.checkpoint_shard() else [])      # a rank's shard differs by design
        print(f"rank {cluster.rank} parameter fingerprint "
              f"{checkpoint.fingerprint(network, skip=own)}", flush=True)
    if saving and cluster.is_main and not refit:
        print(f"checkpoints in {cfg.output_path}: " + ", ".join(
            f"best_{m}.ckpt" for m in cfg.best_ckpt_metrics), flush=True)
    elif saving and cluster.is_main and periodic.last_path:
        print(f"checkpoint of the last epoch (the result of this run): {periodic.last_path}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
