"""Distributed data-parallel training: launcher detection, the rank-table
generator, and real 2-worker CPU jobs through scripts/run_distribute_cpu.sh."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

import eval as eval_entry
import prepare_data
from src.synth import census as census_synth
from src.engine.callbacks import read_metrics_log
from src.engine.distributed import Cluster, launched_distributed, scale_for_cluster
from roles import default_model, sparse_criteo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
SCRIPT = os.path.join(ROOT, "scripts", "run_distribute_cpu.sh")


def test_only_a_launcher_makes_a_run_distributed():
    assert not launched_distributed({})
    assert not launched_distributed({"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "1"})
    assert launched_distributed({"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "2"})
    assert launched_distributed({"MS_ROLE": "MS_SCHED", "MS_WORKER_NUM": "8"})
    assert launched_distributed({"RANK_TABLE_FILE": "t.json", "RANK_SIZE": "8"})
    assert not launched_distributed({"RANK_SIZE": "8"})


def test_cpu_threads_share_the_cores_among_local_workers():
    from src.engine.runtime import cpu_threads
    assert cpu_threads(0, {}, cores=16) == 16
    assert cpu_threads(3, {}, cores=16) == 3                    # asked for: taken as is
    msrun = {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "4"}
    assert cpu_threads(0, msrun, cores=16) == 4
    assert cpu_threads(0, {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "8"}, cores=2) == 1


def test_distributed_learning_rate_rules():
    class Cfg(dict):
        __getattr__ = dict.get

        def __setattr__(self, key, value):
            self[key] = value
    cfg = Cfg(learning_rate=0.001, warmup_epochs=5.0, distributed_lr_factor=0.5,
              distributed_warmup_factor=0.5)
    assert scale_for_cluster(cfg, Cluster(0, 1)) is None and cfg.learning_rate == 0.001
    assert "learning_rate 0.0005" in scale_for_cluster(cfg, Cluster(1, 8))
    assert cfg.warmup_epochs == 2.5


def test_rank_table_generator(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("hccl_tools", os.path.join(ROOT, "scripts", "hccl_tools.py"))
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    assert tools.parse_range("[0,8)") == list(range(8)) and tools.parse_range("[4,8)") == [4, 5, 6, 7]
    for bad in ("0-8", "[3,6)", "[2,2)", "[0,9)"):
        with pytest.raises(ValueError):
            tools.parse_range(bad)
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.98.92.100\nnetmask_0=255.255.255.0\naddress_1=192.98.93.100\n")
    assert tools.main(["--device_num", "[0,2)", "--hccn_conf", str(conf), "--server_ip", "10.1.1.1",
                       "--output_dir", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "hccl_2p_01_10.1.1.1.json").read_text())
    devices = table["server_list"][0]["device"]
    assert [(d["rank_id"], d["device_id"], d["device_ip"]) for d in devices] == \
        [("0", "0", "192.98.92.100"), ("1", "1", "192.98.93.100")]
    assert tools.main(["--device_num", "[0,4)", "--hccn_conf", str(conf)]) == 2      # no address_2
    assert tools.main(["--hccn_conf", str(tmp_path / "missing")]) == 2


def _run(workers, data, out, *extra, timeout=300):
    return subprocess.run(["bash", SCRIPT, str(workers), str(data), str(out), "--", *map(str, extra)],
                          capture_output=True, text=True, timeout=timeout)


def _worker_logs(out):
    logs = {}
    for name in sorted(os.listdir(out / "log")):
        match = re.fullmatch(r"worker_(\d+)\.log", name)
        if match:
            logs[int(match.group(1))] = (out / "log" / name).read_text(errors="replace")
    return logs


def _census(tmp_path, train_rows, test_rows, seed):
    """Generated Census-Income files converted into ``tmp_path/mr`` in small blocks."""
    census_synth.generate_dataset(str(tmp_path / "raw"), train_rows=train_rows, test_rows=test_rows,
                                  seed=seed)
    prepare_data.main(["--config_path", CPU_CONFIG, "--raw_data_path", str(tmp_path / "raw"),
                       "--data_path", str(tmp_path / "mr"), "--block_rows", "256"])


def _check_data_parallel_run(out, total_rows):
    logs = _worker_logs(out)
    assert sorted(logs) == [0, 1]
    fingerprints = [re.search(r"rank \d parameter fingerprint (\w+)", logs[r]).group(1) for r in (0, 1)]
    assert fingerprints[0] == fingerprints[1]                    # the ranks stayed in step
    rows = [int(re.search(r"(\d+) training rows \(rank %d of 2" % r, logs[r]).group(1)) for r in (0, 1)]
    assert sum(rows) == total_rows and min(rows) > 0.4 * total_rows   # disjoint halves
    steps = {re.search(r"rank \d of 2, (\d+) steps/epoch", logs[r]).group(1) for r in (0, 1)}
    assert len(steps) == 1
    assert "checkpoints in" in logs[0] and "checkpoints in" not in logs[1]
    log = read_metrics_log(str(out / "metrics.jsonl"))
    assert [r["epoch"] for r in log] == [1, 2] and log[1]["train_loss"] < log[0]["train_loss"]
    return log


def test_the_default_model_on_two_cpu_workers(tmp_path):
    assert default_model("census")
    _census(tmp_path, train_rows=5333, test_rows=2000, seed=3)     # 4,000 train + 1,333 val rows
    out = tmp_path / "run"
    result = _run(2, tmp_path / "mr", out, "--epoch_size", 2, "--batch_size", 64,
                  "--learning_rate", 0.01, "--warmup_epochs", 0.5)
    assert result.returncode == 0, result.stdout + result.stderr
    _check_data_parallel_run(out, 4000)
    # rank 0's progress reached the console while the job ran, with the time on each line
    streamed = [l for l in result.stdout.splitlines() if l.startswith("rank 0: ")]
    assert any("epoch 2/2" in l for l in streamed), result.stdout[-2000:]
    assert all(re.match(r"rank 0: \d\d:\d\d:\d\d ", l) for l in streamed), streamed[:3]
    assert eval_entry.main(["--config_path", CPU_CONFIG, "--data_path", str(tmp_path / "mr"),
                            "--ckpt_file", str(out / "best_avg_auc.ckpt"),
                            "--output_path", str(out)]) == 0


def test_a_sparse_table_model_on_two_cpu_workers(tmp_path):
    spec = sparse_criteo(tmp_path, 12000, 2, CPU_CONFIG)
    with open(tmp_path / "mr" / "feature_map.json") as fh:
        train_rows = json.load(fh)["splits"]["train"]["rows"]
    out = tmp_path / "run"
    result = _run(2, tmp_path / "mr", out, "--model", spec.name, *spec.trial.args, "--epoch_size", 2,
                  "--batch_size", 128, "--optimizer", "adam", "--learning_rate", 0.003)
    assert result.returncode == 0, result.stdout + result.stderr
    log = _check_data_parallel_run(out, train_rows)
    assert log[-1]["val"]["click_auc"] > 0.65


def _find_worker(out, rank):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "train.py" in cmd and str(out) in cmd and f"RANK_ID={rank}\0" in env \
                and "MS_ROLE=MS_WORKER" in env:
            return int(pid)
    return None


def test_a_dead_worker_fails_the_job_and_names_its_log(tmp_path):
    _census(tmp_path, train_rows=3000, test_rows=1000, seed=4)
    out = tmp_path / "run"
    job = subprocess.Popen(["bash", SCRIPT, "2", str(tmp_path / "mr"), str(out), "--",
                            "--epoch_size", "500", "--batch_size", "32"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    pid = None
    while time.time() < deadline and pid is None:
        log = out / "log" / "worker_1.log"
        if log.exists() and "steps/epoch" in log.read_text(errors="replace"):
            pid = _find_worker(out, 1)
        time.sleep(1)
    assert pid, "worker 1 did not start training"
    os.kill(pid, signal.SIGKILL)
    started = time.time()
    try:
        _, err = job.communicate(timeout=240)
    finally:
        job.kill()
    assert job.returncode != 0
    assert time.time() - started < 240
    assert re.search(r"error: worker_1 \(pid \d+\) exited with code -9; its log: .*worker_1\.log", err), err


def test_a_multi_server_rank_table_and_each_servers_share(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("hccl_tools", os.path.join(ROOT, "scripts", "hccl_tools.py"))
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.98.92.100\naddress_1=192.98.93.100\n")
    paths = []
    for server in ("10.1.1.1", "10.1.1.2"):
        assert tools.main(["--device_num", "[0,2)", "--hccn_conf", str(conf), "--server_ip", server,
                           "--output_dir", str(tmp_path / server)]) == 0
        paths.append(str(tmp_path / server / f"hccl_2p_01_{server}.json"))
    assert tools.main(["--merge", *paths, "--output_dir", str(tmp_path)]) == 0
    merged = tmp_path / "hccl_4p_2servers.json"
    table = json.loads(merged.read_text())
    assert table["server_count"] == "2"
    assert [(s["server_id"], [(d["rank_id"], d["device_id"]) for d in s["device"]])
            for s in table["server_list"]] == [("10.1.1.1", [("0", "0"), ("1", "1")]),
                                                ("10.1.1.2", [("2", "0"), ("3", "1")])]
    assert tools.main(["--merge", paths[0], paths[0], "--output_dir", str(tmp_path)]) == 2
    # the second server starts its own two devices as ranks 2 and 3 of 4 (train.py then
    # fails here, without Ascend devices, and the launcher names the rank)
    _census(tmp_path, train_rows=300, test_rows=100, seed=5)
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distribute_ascend.sh"),
                             str(merged), str(tmp_path / "mr"), str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, SERVER_ID="10.1.1.2"))
    assert "training on 2 of 4 Ascend devices" in result.stdout, result.stdout + result.stderr
    assert "rank 2 on device 0" in result.stdout and "rank 3 on device 1" in result.stdout
    assert result.returncode != 0 and re.search(r"error: rank [23] failed", result.stderr)
    unknown = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distribute_ascend.sh"),
                              str(merged), str(tmp_path / "mr"), str(tmp_path / "run2")],
                             capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, SERVER_ID="10.9.9.9"))
    assert unknown.returncode == 2 and "no server '10.9.9.9'" in unknown.stderr
