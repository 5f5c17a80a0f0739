"""Multi-host training for real: two hosts made as two network namespaces on
this machine (a veth pair, one address each), scripts/run_distribute_cpu.sh
started in each with its NODE_RANK. Needs root and iproute2 (.ci/run installs
it); skipped with the reason where either is missing."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from roles import sparse_criteo
from src.engine.distributed import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
SCRIPT = os.path.join(ROOT, "scripts", "run_distribute_cpu.sh")


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def hosts():
    """Two namespaces joined by a veth pair: ``[(name, address), (name, address)]``."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed: apt-get install iproute2")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = os.getpid() % 10000
    names, subnet = [f"zoo{tag}h0", f"zoo{tag}h1"], f"10.231.{tag % 250}"
    made = _ip("netns", "add", names[0])
    if made.returncode:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        steps = [("netns", "add", names[1]),
                 ("link", "add", f"zoo{tag}v0", "type", "veth", "peer", "name", f"zoo{tag}v1")]
        for i, name in enumerate(names):
            steps += [("link", "set", f"zoo{tag}v{i}", "netns", name),
                      ("-n", name, "addr", "add", f"{subnet}.{i + 1}/24", "dev", f"zoo{tag}v{i}"),
                      ("-n", name, "link", "set", f"zoo{tag}v{i}", "up"),
                      ("-n", name, "link", "set", "lo", "up")]
        for step in steps:
            result = _ip(*step)
            assert result.returncode == 0, f"ip {' '.join(step)}: {result.stderr}"
        yield [(name, f"{subnet}.{i + 1}") for i, name in enumerate(names)]
    finally:
        for name in names:
            _ip("netns", "del", name)


@pytest.fixture(scope="module")
def criteo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hosts")
    return sparse_criteo(tmp, 4000, 6, CPU_CONFIG), tmp


def _start(hosts, spec, tmp, out, *extra):
    """The launcher on both hosts (host 1 first: it waits for host 0's scheduler)."""
    port = str(free_port())
    jobs = []
    for rank in (1, 0):
        env = dict(os.environ, NODES="2", NODE_RANK=str(rank), MASTER_ADDR=hosts[0][1],
                   MASTER_PORT=port)
        jobs.append(subprocess.Popen(
            ["ip", "netns", "exec", hosts[rank][0], "bash", SCRIPT, "1", str(tmp / "mr"), str(out),
             "--", "--model", spec.name, *spec.trial.args, "--batch_size", "128",
             "--parallel", "row", *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    return jobs[::-1]                                           # host 0, host 1


def test_a_job_over_two_hosts_with_a_row_sharded_table(hosts, criteo):
    spec, tmp = criteo
    out = tmp / "run"
    jobs = _start(hosts, spec, tmp, out, "--epoch_size", 2)
    results = [job.communicate(timeout=600) for job in jobs]
    for job, (stdout, stderr) in zip(jobs, results):
        assert job.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "(host 1 of 2, 2 in all)" in results[1][0]
    prints = []
    for rank in (0, 1):
        log = (out / "log" / f"worker_{rank}.log").read_text(errors="replace")
        assert f"rank {rank} of 2" in log
        prints.append(re.search(r"rank \d parameter fingerprint (\w+)", log).group(1))
    assert prints[0] == prints[1]                             # the hosts' MLPs stayed in step
    assert all((out / f"best_click_auc.shard{r}of2.ckpt").is_file() for r in (0, 1))
    with open(out / "metrics.jsonl") as fh:
        assert [json.loads(line)["epoch"] for line in fh] == [1, 2]
    assert (out / "log" / "msrun_host0.log").is_file() and (out / "log" / "msrun_host1.log").is_file()


@pytest.mark.slow      # about 70 s; by default test_distributed kills a worker of a one-host job
def test_a_killed_worker_on_the_second_host_ends_the_job_and_is_named(hosts, criteo):
    spec, tmp = criteo
    out = tmp / "killed"
    jobs = _start(hosts, spec, tmp, out, "--epoch_size", 500)
    log, pid, deadline = out / "log" / "worker_1.log", None, time.time() + 180
    try:
        while pid is None and time.time() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "steps/epoch" in text:
                pid = int(re.search(r"rank 1 of 2: pid (\d+)", text).group(1))
            time.sleep(0.5)
        assert pid, "worker 1 did not start training"
        time.sleep(2)
        os.kill(pid, 9)
        killed = time.time()
        results = [job.communicate(timeout=120) for job in jobs]
        ended = time.time() - killed
    finally:
        for job in jobs:
            job.kill()
    assert all(job.returncode != 0 for job in jobs)
    assert ended < 60, f"the job took {ended:.0f} s to end"
    # host 1 saw its worker die; host 0 learns it from msrun's scheduler
    assert re.search(r"error: worker_1 \(pid \d+\) exited with code -9", results[1][1]), results[1][1]
    assert "error: worker_1 stopped answering" in results[0][1], results[0][1]
