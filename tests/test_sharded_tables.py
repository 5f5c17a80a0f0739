"""Sharded embedding tables in real msrun CPU jobs: table-wise and row-wise
sharding train exactly as the replicated table does, their checkpoints load
into single-process eval.py and into a run of another parallel mode."""
import json
import os
import re
import subprocess

import pytest

import eval as eval_entry
from src.engine.callbacks import read_metrics_log
from src.engine.errors import CheckpointError
from roles import sparse_criteo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
SCRIPT = os.path.join(ROOT, "scripts", "run_distribute_cpu.sh")


@pytest.fixture(scope="module")
def criteo(tmp_path_factory):
    """Generated Criteo data: 20 steps of 128 rows per rank and epoch on 2 ranks."""
    tmp = tmp_path_factory.mktemp("sharded")
    return sparse_criteo(tmp, 6600, 5, CPU_CONFIG), tmp


def _train(spec, tmp, name, workers, *extra, env=None):
    """A CPU job (no dropout: a resumed run does not continue the dropout mask's random state)."""
    out = tmp / name
    result = subprocess.run(
        ["bash", SCRIPT, str(workers), str(tmp / "mr"), str(out), "--", "--model", spec.name,
         *spec.trial.args, *spec.trial.deterministic_args, "--batch_size", "128", "--optimizer", "adam", "--learning_rate",
         "0.003", "--step_log", "True", *map(str, extra)],
        capture_output=True, text=True, timeout=600, env=None if env is None else dict(os.environ, **env))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _losses(out):
    with open(out / "steps.jsonl") as fh:
        return [json.loads(line)["loss"] for line in fh]


def _fingerprints(out, workers):
    found = set()
    for rank in range(workers):
        text = (out / "log" / f"worker_{rank}.log").read_text(errors="replace")
        found.add(re.search(r"rank \d+ parameter fingerprint (\w+)", text).group(1))
    return found


def _periodic(out, spec, epoch):
    """The stem of the run's periodic checkpoint of ``epoch`` (its main file)."""
    found = [p.name[:-5] for p in out.glob(f"{spec.name}-{epoch}_*.ckpt") if ".shard" not in p.name]
    assert len(found) == 1, found
    return found[0]


def _table_copies(graphs):
    """``(reads, copies)`` of the embedding table in the graphs MindSpore
    compiled and saved under ``graphs``: its Loads, and the TensorMoves of
    them (a whole copy of the table each, every step)."""
    reads = copies = 0
    for path in graphs.glob("rank_*/graph_build_*.ir"):
        text = path.read_text(errors="replace")
        loads = set(re.findall(r"(%\d+)\(\w+\) = Load\(%para\d+_embedding\.weight,", text))
        reads += len(loads)
        copies += sum(src in loads for src in re.findall(r"= TensorMove\((%\d+)\)", text))
    return reads, copies


def _same(a, b):
    assert len(a) == len(b) and len(a) >= 20
    assert all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)), list(zip(a, b))[:5]


@pytest.mark.slow      # about 80 s; by default the two-host row-sharded job (test_multi_host) trains a sharded table
def test_sharded_tables_train_as_the_replicated_one(criteo):
    spec, tmp = criteo
    replicated = _train(spec, tmp, "data", 2, "--epoch_size", 2, "--parallel", "data",
                        "--save_checkpoint", "False")
    table = _train(spec, tmp, "table", 2, "--epoch_size", 2, "--parallel", "table")
    _same(_losses(replicated), _losses(table))
    want = [r["val"]["click_auc"] for r in read_metrics_log(str(replicated / "metrics.jsonl"))]
    got = [r["val"]["click_auc"] for r in read_metrics_log(str(table / "metrics.jsonl"))]
    assert got == pytest.approx(want, abs=1e-6) and want[-1] > 0.6
    assert len(_fingerprints(table, 2)) == 1                   # the ranks' MLPs stayed in step
    # every rank wrote its shard; rank 0 the shared weights with the plan
    for stem in ("best_click_auc", _periodic(table, spec, 2)):
        assert all((table / f"{stem}.shard{r}of2.ckpt").is_file() for r in range(2))
    # the shards put together: single-process eval.py scores the validation split as training did
    assert eval_entry.main(["--config_path", CPU_CONFIG, "--data_path", str(tmp / "mr"),
                            "--ckpt_file", str(table / "best_click_auc.ckpt"), "--eval_split",
                            "val", "--output_path", str(tmp / "eval")]) == 0
    with open(tmp / "eval" / "eval_best_click_auc_val.json") as fh:
        assert json.load(fh)["metrics"]["click_auc"] == pytest.approx(max(got), abs=1e-6)

    # row-wise for one epoch, then resumed table-wise: the checkpoint is resharded
    resumed = _train(spec, tmp, "resumed", 2, "--epoch_size", 1, "--parallel", "row")
    _train(spec, tmp, "resumed", 2, "--epoch_size", 2, "--parallel", "table", "--resume", "True")
    _same(_losses(replicated), _losses(resumed))
    # a shard file that belongs to another save is refused
    first, last = _periodic(resumed, spec, 1), _periodic(resumed, spec, 2)
    os.replace(resumed / f"{first}.shard1of2.ckpt", resumed / f"{last}.shard1of2.ckpt")
    with pytest.raises(CheckpointError, match=r"shard1of2.ckpt does not belong to .*epoch 1 vs 2"):
        eval_entry.main(["--config_path", CPU_CONFIG, "--data_path", str(tmp / "mr"),
                         "--ckpt_file", str(resumed / f"{last}.ckpt")])


@pytest.mark.slow      # three four-rank jobs on two cores, about 90 s; two ranks run by default
def test_table_and_row_wise_sharding_over_four_ranks_with_adagrad(criteo):
    spec, tmp = criteo
    modes = ("data", "table", "row")
    runs = [_train(spec, tmp, f"four_{mode}", 4, "--epoch_size", 1, "--parallel", mode,
                   "--optimizer", "adagrad", "--learning_rate", "0.01", "--batch_size", 48,
                   "--save_checkpoint", "False",
                   env={"MS_DEV_SAVE_GRAPHS": "1", "MS_DEV_SAVE_GRAPHS_PATH": str(tmp / f"ir_{mode}")})
            for mode in modes]
    for mode in modes:
        # no step copies the table: it reads it before writing it
        reads, copies = _table_copies(tmp / f"ir_{mode}")
        assert reads >= 4 and copies == 0, (mode, reads, copies)
    losses = list(map(_losses, runs))
    for sharded in losses[1:]:
        _same(losses[0], sharded)
    aucs = [read_metrics_log(str(out / "metrics.jsonl"))[-1]["val"]["click_auc"] for out in runs]
    assert aucs[1:] == pytest.approx([aucs[0]] * 2, abs=1e-6)
    for out in runs[1:]:
        assert len(_fingerprints(out, 4)) == 1
