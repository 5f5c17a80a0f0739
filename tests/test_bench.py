"""Smoke test of the benchmark suite (bench/): a few steps of every group for
the first model on the census data (the quickest) on small generated data. No timing is asserted; the figures only have
to exist and be positive. The peer side runs when PyTorch is installed
(bench/requirements.txt; CI installs it)."""
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from roles import on
from src.registry import get_model_spec, model_names

HAVE_TORCH = importlib.util.find_spec("torch") is not None
MODEL = on("census")


def test_quick_suite_writes_the_table(tmp_path):
    """Every group, with the training and pipeline cases at the model's
    largest training batch only (the others run the same code)."""
    out = tmp_path / "benchmarks.md"
    sides = "ours,peer" if HAVE_TORCH else "ours"
    env = dict(os.environ, GLOG_v="3")
    spec = get_model_spec(MODEL)
    largest = spec.bench_train_batches[-1]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--models", MODEL, "--sides", sides,
         "--train_batches", str(largest), "--work_dir", str(tmp_path / "work"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert report["errors"] == []
    assert report["environment"]["versions"]["mindspore"] == "2.10.0"
    groups = {}
    for row in report["cases"]:
        groups.setdefault(row["group"], []).append(row)
        assert row["ours"] > 0, row
    assert [r["batch"] for r in groups["train"]] == [r["batch"] for r in groups["pipeline"]] == [largest]
    assert [r["batch"] for r in groups["predict"]] == [1, spec.bench_predict_batch]
    assert [r["batch"] for r in groups["cpp"]] == [1, spec.bench_predict_batch]
    assert groups["converter"][0]["lines"] == 20000
    for row in groups["pipeline"]:           # compared with the training figure of its case
        train = next(r for r in groups["train"] if r["batch"] == row["batch"])
        assert row["peer"] == train["ours"]
    for row in groups["train"]:              # the A/A control: ours against ours
        assert row["control"] > 0 and len(row["spread"]["ours"]["processes"]) == 2
        assert len(row["spread"]["ours"]["rates"]) == 2      # 1 repetition x 2 processes
    for row in groups["train"] + groups["predict"]:
        if HAVE_TORCH:
            assert row["peer"] > 0 and abs(row["ratio"] - row["ours"] / row["peer"]) < 1e-9
            # the peer counted the case's FLOPs: a step does more than a prediction
            share = row["ours"] * row["flops_per_sample"] / report["peak"]["flops_per_s"]
            assert row["flops_per_sample"] > 0 and abs(row["peak_share"] - share) < 1e-12
        else:
            assert row["peer"] is None and "flops_per_sample" not in row
    if HAVE_TORCH:
        step = {r["batch"]: r["flops_per_sample"] for r in groups["train"]}
        large = next(r for r in groups["predict"] if r["batch"] == spec.bench_predict_batch)
        assert step[max(step)] > 2 * large["flops_per_sample"]
    text = out.read_text()
    for title in ("Training throughput", "Input pipeline", "Inference from Python",
                  "Inference from C++", "Criteo converter"):
        assert f"## {title}" in text
    assert f"| {MODEL} batch {largest} | samples/s |" in text
    flops = " MFLOP/sample | % of peak |" if HAVE_TORCH else ""
    header = next(line for line in text.splitlines() if line.startswith("| case | unit | ours |"))
    assert header.startswith(f"| case | unit | ours | peer | ratio | A/A |{flops}")
    assert header.endswith(" target | met |")
    assert isinstance(report["settings"]["fixed_layout"], bool) and "address-space" in text


def test_pooled_joins_the_processes_of_a_side():
    from bench.measure import pooled
    res = pooled({"ours#1": {"median": 2.0, "rates": [1.0, 2.0, 3.0], "units": 5},
                  "peer#1": {"median": 5.0, "rates": [5.0], "units": 2},
                  "ours#2": {"median": 10.0, "rates": [10.0, 20.0], "units": 6}})
    assert res["ours"]["rates"] == [1.0, 2.0, 3.0, 10.0, 20.0]
    assert res["ours"]["median"] == 3.0 and res["ours"]["processes"] == [2.0, 10.0]
    assert (res["ours"]["min"], res["ours"]["max"], res["ours"]["units"]) == (1.0, 20.0, [5, 6])
    assert res["peer"]["median"] == 5.0 and res["peer"]["processes"] == [5.0]


def test_exports_are_made_again_when_the_code_changes(tmp_path):
    """The C++ case caches exports under a fingerprint of export.py, the
    configs and src/: an edit anywhere in them changes it, other files do not."""
    from bench.infer_cpp import code_fingerprint
    (tmp_path / "src" / "model").mkdir(parents=True)
    for name, text in (("export.py", "e"), ("default_config.yaml", "a: 1"),
                       ("default_config_cpu.yaml", "a: 2"), ("src/model/net.py", "m = 1"),
                       ("README.md", "r")):
        (tmp_path / name).write_text(text)
    first = code_fingerprint(str(tmp_path))
    (tmp_path / "README.md").write_text("other")
    assert code_fingerprint(str(tmp_path)) == first
    seen = {first}
    for name, text in (("src/model/net.py", "m = 2"), ("default_config_cpu.yaml", "a: 3"),
                       ("export.py", "f")):
        (tmp_path / name).write_text(text)
        now = code_fingerprint(str(tmp_path))
        assert now not in seen
        seen.add(now)


def test_bad_arguments_are_refused():
    done = subprocess.run([sys.executable, "-m", "bench.run", "--models", "resnet"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert f"--models: resnet not in {', '.join(model_names())}" in done.stderr
    # the one-case tools name the models they take, without a traceback (the
    # ceiling, which counts the peer's products, only models with a peer)
    from bench.peer import has_peer
    without_peer = [m for m in model_names() if not has_peer(m)]
    for tool, model in (("bench.reader_cost", "resnet"), ("bench.ceiling", "resnet"),
                        *(("bench.ceiling", m) for m in without_peer[:1])):
        done = subprocess.run([sys.executable, "-m", tool, "--model", model, "--batch_size", "8"],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (tool, done.stderr)
        assert f"argument --model: invalid choice: '{model}'" in done.stderr, (tool, done.stderr)


def test_sharded_table_memory_bench_reports_each_ranks_share(tmp_path):
    from roles import sparse_on
    env = dict(os.environ, GLOG_v="3", TMPDIR=str(tmp_path),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(
        [sys.executable, "bench/sharded.py", "--ranks", "2", "--parallel", "row", "--model",
         sparse_on("criteo"), "--rows", "60000", "--dim", "4", "--batch_size", "64", "--steps", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(line["rank"] for line in lines) == [0, 1]
    # DeepFM's table also holds a row per numeric field: 60,013 rows in all
    assert sum(line["table_rows_here"] for line in lines) in (60000, 60013)
    assert all(line["step_ms"] > 0 and line["peak_mb"] >= line["rss_built_mb"] > 0 for line in lines)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("bench_sharded_")]   # logs removed


def _table(*controls):
    """A report of one training case per A/A control, each ahead of the peer."""
    from bench import report
    env = report.environment("python -m bench.run")
    rows = [{"group": "train", "case": f"m batch {b}", "unit": "samples/s", "ours": 110.0,
             "peer": 100.0, "ratio": 1.1, "target": "ratio >= 1.0", "met": True, "control": c}
            for b, c in enumerate(controls)]
    rows.append({"group": "pipeline", "case": "m batch 0", "unit": "rows/s", "ours": 400.0,
                 "peer": 110.0, "ratio": 3.6, "target": "reader >= 3x training", "met": True})
    return {"environment": env, "settings": {"reps": 1, "seconds": 1.0, "warmup": 1, "processes": 2},
            "cases": rows, "errors": []}


def test_a_run_whose_aa_is_off_claims_no_target_against_the_peer(tmp_path):
    from bench import report
    md, js = str(tmp_path / "b.md"), str(tmp_path / "b.json")
    report.write(_table(1.02, 0.97), js, md)
    text = open(md).read()
    assert "Invalid run" not in text and "| ratio >= 1.0 | yes |" in text
    assert json.load(open(js))["validity"]["valid"] is True
    report.write(_table(1.02, 1.08), js, md)
    text = open(md).read()
    assert "**Invalid run: A/A outside 0.95-1.05** (m batch 1 1.080)" in text
    assert "| ratio >= 1.0 | yes |" not in text and text.count("not claimed (A/A)") == 2
    assert "| reader >= 3x training | yes |" in text        # ours against ours: no peer involved
    saved = json.load(open(js))["validity"]
    assert saved["valid"] is False and saved["outside"] == [{"case": "m batch 1", "control": 1.08}]
    no_control = _table(1.0)
    del no_control["cases"][0]["control"]
    report.write(no_control, js, md)
    assert "not claimed (no A/A)" in open(md).read()


def test_a_case_without_a_peer_shows_no_target_to_meet(tmp_path):
    """A model with no PyTorch peer (or a run of ours alone) has no ratio:
    its row names no ratio target, and meets none."""
    from bench import report
    md, js = str(tmp_path / "b.md"), str(tmp_path / "b.json")
    table = _table(1.0, 1.01)
    table["cases"][1].update(peer=None, ratio=None, met=None)
    report.write(table, js, md)
    rows = [line for line in open(md).read().splitlines() if line.startswith("| m batch")]
    assert rows[0].endswith("| 1.100 | 1.000 | ratio >= 1.0 | yes |"), rows[0]
    assert rows[1].endswith("| - | 1.010 | - (no peer) | - |"), rows[1]
    assert rows[2].endswith("| reader >= 3x training | yes |"), rows[2]


def test_a_partial_run_never_writes_over_the_committed_table(tmp_path):
    from bench import run
    work = str(tmp_path / "w")
    full = run.parse_args(["--work_dir", work])
    assert run.output_path(full) == run.COMMITTED
    for partial in (["--groups", "train"], ["--models", MODEL], ["--sides", "ours"], ["--quick"],
                    ["--train_batches", "256"]):
        args = run.parse_args(["--work_dir", work, *partial])
        assert run.output_path(args) == os.path.join(work, "partial", "benchmarks.md")
        named = run.parse_args(["--work_dir", work, "--out", "docs/../docs/benchmarks.md", *partial])
        old = os.getcwd()
        os.chdir(ROOT)
        try:
            with pytest.raises(SystemExit, match="does not write over"):
                run.output_path(named)
        finally:
            os.chdir(old)
    other = run.parse_args(["--work_dir", work, "--groups", "train", "--out", str(tmp_path / "x.md")])
    assert run.parse_args(["--train_batches", "2048,256"]).train_batches == [2048, 256]
    with pytest.raises(SystemExit):
        run.parse_args(["--train_batches", "300"])          # no model trains at 300 in the table
    assert run.output_path(other) == str(tmp_path / "x.md")


@pytest.mark.skipif(not HAVE_TORCH, reason="the FLOP count runs on PyTorch (bench/requirements.txt)")
def test_flops_per_sample_are_the_matrix_products_of_a_step():
    """8 -> 4 -> 1: a prediction is 2*(8*4 + 4*1) = 72 FLOPs per sample; a
    step adds the weight gradients (64 + 8) and the gradient of the hidden
    layer's output (8), not one for the input, which needs none."""
    import torch
    from bench.flops import counted, machine_peak
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    x = torch.randn(5, 8)
    assert counted(lambda: net(x), 5) == 72
    assert counted(lambda: net(x).sum().backward(), 5) == 152
    peak = machine_peak(size=128, reps=2)
    assert peak["flops_per_s"] > 1e6 and "128x128" in peak["how"]


def test_the_table_gives_flops_per_sample_and_the_share_of_the_peak(tmp_path):
    from bench import report
    table = _table(1.0)
    table["cases"][0].update(flops_per_sample=3.0e6, peak_share=110.0 * 3.0e6 / 2.0e9)
    table["peak"] = {"flops_per_s": 2.0e9, "how": "NumPy float32 2048x2048 matrix product, best of 5"}
    md, js = str(tmp_path / "b.md"), str(tmp_path / "b.json")
    report.write(table, js, md)
    text = open(md).read()
    assert "| A/A | MFLOP/sample | % of peak | target | met |" in text
    assert "| 1.000 | 3 | 16.5 % | ratio >= 1.0 |" in text
    assert "2 GFLOP/s (NumPy float32 2048x2048 matrix product, best of 5, measured in this run)" in text
    del table["cases"][0]["flops_per_sample"], table["peak"]
    report.write(table, js, md)                        # a table without counts has no such columns
    assert "MFLOP/sample" not in open(md).read()


def test_the_table_names_the_widest_vector_instructions_of_the_machine(tmp_path):
    from bench import report
    cpuinfo = tmp_path / "cpuinfo"
    for flags, name in (("fpu sse2 avx fma avx2 avx512f avx512bw", "AVX-512"),
                        ("fpu sse2 avx fma avx2", "AVX2"), ("fp asimd evtstrm", "NEON"),
                        ("fpu sse2", "unknown")):
        key = "Features" if "asimd" in flags else "flags"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: A CPU\n{key}\t\t: {flags}\n\n")
        assert report._simd(str(cpuinfo)) == name
    assert report._simd(str(tmp_path / "missing")) == "unknown"
    table = _table(1.0)
    table["environment"]["machine"]["simd"] = "AVX-512"
    md, js = str(tmp_path / "b.md"), str(tmp_path / "b.json")
    report.write(table, js, md)
    assert re.search(r"- Machine: .+ \(AVX-512\), \d+ cores", open(md).read())
    del table["environment"]["machine"]["simd"]           # a table from before the field
    report.write(table, js, md)
    assert "(vector instructions not recorded)" in open(md).read()


@pytest.mark.skipif(not HAVE_TORCH, reason="the peers run on PyTorch (bench/requirements.txt)")
def test_the_peers_run_the_networks_of_the_cpu_config(tmp_path):
    """Every peer against our network under the CPU config and its variants
    (forward, three training steps, initialisation): a config change that
    reaches only our side (as per-field embeddings once did) makes the
    benchmark compare two different networks."""
    from bench.peer import has_peer
    done = subprocess.run([sys.executable, "-m", "bench.peer.check"], cwd=ROOT,
                          env=dict(os.environ, GLOG_v="3", TMPDIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert not [f for f in os.listdir(tmp_path) if f.startswith("peer_check_")]   # its scratch folder
    passed, total = map(int, re.search(r"(\d+)/(\d+) checks passed", done.stdout).groups())
    assert passed == total >= 3 * sum(map(has_peer, model_names()))


def _models_with_peer_variants():
    from bench.peer import has_peer, peer_variants
    return [m for m in model_names() if has_peer(m) and len(peer_variants(m)) > 1]


@pytest.mark.skipif(not HAVE_TORCH, reason="the peers run on PyTorch (bench/requirements.txt)")
@pytest.mark.parametrize("model", _models_with_peer_variants() if HAVE_TORCH else [])
def test_a_peers_variants_are_one_network(model):
    """Built from one seed, every variant of a peer (e.g. one fused table
    against a table per field) starts from the same weights and gives the
    same outputs and losses, step after step."""
    import numpy as np
    import torch
    from bench.peer import build_peer, peer_variants
    from bench.peer.check import config, feature_map, raw_batch
    from src.registry import get_model_spec
    spec = get_model_spec(model)
    rng = np.random.default_rng(0)
    fmap = feature_map(spec.dataset.name, rng)
    # 128 rows: past the batch size from which MMoE folds its input layer
    batches = [spec.make_batch(raw_batch(spec.dataset.name, fmap, rng, 128), fmap) for _ in range(3)]
    l2 = ["--embedding_l2", "0.01"] if config(model).get("embedding_l2") is not None else []
    for extra in ([], ["--optimizer", "adam", "--learning_rate", "0.01"] + l2):
        cfg = config(model, ["--batch_size", "128"] + extra)
        runs = []
        for variant in peer_variants(model):
            torch.manual_seed(0)
            peer = build_peer(cfg, fmap, seed=3, steps_per_epoch=10, variant=variant)
            first = peer.logits(*batches[0][:-1])
            losses = [peer.train_step(*b) for b in batches]
            runs.append((variant, first, losses, peer.logits(*batches[0][:-1])))
        base = runs[0]
        for variant, first, losses, after in runs[1:]:
            # the same draws (a fold reorders the sums: equal to rounding)
            np.testing.assert_allclose(first, base[1], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{variant} {extra}")
            np.testing.assert_allclose(losses, base[2], rtol=1e-6, err_msg=f"{variant} {extra}")
            np.testing.assert_allclose(after, base[3], rtol=1e-5, atol=1e-6)
            assert not np.allclose(after, first)                               # it trained
    with pytest.raises(ValueError, match="has no variant 'nonesuch'"):
        build_peer(config(model), fmap, variant="nonesuch")


def test_peer_settings_are_its_wait_policies_and_one_thread():
    from bench.measure import peer_settings, setting_name
    two = peer_settings(2)
    assert [setting_name(s) for s in two] == ["2 threads, OMP_WAIT_POLICY=unset",
                                              "2 threads, OMP_WAIT_POLICY=PASSIVE", "1 thread"]
    assert peer_settings(1) == [{"threads": 1, "wait": None}]


def _started_workers(monkeypatch):
    """``bench.measure``'s worker processes replaced by fakes that answer
    READY at once; returns the list their ``(command, env)`` go to."""
    from bench import measure
    seen = []

    class Popen:
        def __init__(self, command, env, **kwargs):
            seen.append((command, env))
            self.stdout = io.StringIO("READY {}\n")

        def poll(self):
            return 0

    monkeypatch.setattr(measure.subprocess, "Popen", Popen)
    return seen


def test_a_workers_setting_reaches_its_environment(monkeypatch, tmp_path):
    from bench import measure
    seen = _started_workers(monkeypatch)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    log = str(tmp_path / "w.log")
    for setting in ({"threads": 2, "wait": "PASSIVE"}, {"threads": 1, "wait": None}, None):
        measure.Worker("peer", "train", "m", 8, "d", log, str(tmp_path), threads=4,
                       setting=setting, variant="reference").close()
    (passive, cmd_p), (one, cmd_1), (plain, cmd_0) = [(e.get("OMP_WAIT_POLICY"), c) for c, e in seen]
    assert (passive, one, plain) == ("PASSIVE", None, "ACTIVE")
    assert cmd_p[cmd_p.index("--threads") + 1] == "2" and cmd_1[cmd_1.index("--threads") + 1] == "1"
    assert cmd_0[cmd_0.index("--threads") + 1] == "4"
    assert cmd_0[cmd_0.index("--side") + 1] == "peer" and cmd_0[-2:] == ["--variant", "reference"]


def _stack_of_a_new_process():
    done = subprocess.run([sys.executable, "-c", "print(next(line for line in open('/proc/self/maps') "
                           "if '[stack]' in line))"], capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux's address-space maps")
def test_workers_start_with_one_address_space_layout(monkeypatch, tmp_path):
    """After a worker is made, the processes started from the benchmark have
    the same layout each time (where the system lets it be fixed), so two
    processes of the same code are two runs of one process."""
    from bench import measure
    seen = _started_workers(monkeypatch)
    monkeypatch.setattr(measure, "_layout", None)
    measure.Worker("ours", "train", "m", 8, "d", str(tmp_path / "w.log"), str(tmp_path)).close()
    fixed = measure._layout             # what the worker asked for, as it started
    assert len(seen) == 1 and fixed in (True, False)
    monkeypatch.undo()                  # real processes from here on
    if not fixed:
        pytest.skip("the system refused to turn address-space randomisation off")
    assert _stack_of_a_new_process() == _stack_of_a_new_process()


@pytest.mark.skipif(not HAVE_TORCH, reason="the peer variants are read from bench/peer (torch)")
def test_a_case_compares_ours_with_the_peers_fastest_run(monkeypatch, tmp_path):
    """Driven by fake workers whose speed is known: the peer runs every
    variant in every thread setting, one process each, in ours' turns, and the
    ratio is against the fastest of those runs."""
    from bench import report, run
    from bench.peer import peer_variants
    models = _models_with_peer_variants()
    assert models, "no peer defines VARIANTS"
    model = models[0]
    default, other = peer_variants(model)[:2]
    speed = {"ours": 120.0, "peer": 100.0, f"peer:{other}": 104.0}
    made = []

    class FakeWorker:
        def __init__(self, side, kind, model, batch, data_path, log, cwd, threads=0, setting=None,
                     variant=None):
            side = f"{side}:{variant}" if variant else side
            self.side, self.setting, self.setup = side, setting, {}
            slow = 1.0 if setting is None or setting.get("wait") == "PASSIVE" else 0.5
            self.rate = speed[side] * slow
            made.append(self)

        def run(self, n):
            return n / self.rate, n

        def close(self):
            pass

    monkeypatch.setattr(run, "Worker", FakeWorker)
    args = run.parse_args(["--work_dir", str(tmp_path), "--reps", "3", "--warmup", "1",
                           "--threads", "2", "--models", model, "--groups", "train"])
    suite = run.Suite(args, "test")
    suite.data = lambda m: str(tmp_path)
    suite.train(model, 64)
    row = suite.report["cases"][0]
    assert sorted(w.side for w in made) == sorted(["ours"] * 4 + ["peer"] * 3 + [f"peer:{other}"] * 3)
    assert all((w.setting is None) == (w.side == "ours") for w in made)
    assert sorted(str(w.setting) for w in made if w.side == "peer") == sorted(
        str(s) for s in run.peer_settings(2))
    assert row["peer_variant"] == other and row["peer_setting"] == "2 threads, OMP_WAIT_POLICY=PASSIVE"
    assert row["peer"] == 104.0 and abs(row["ratio"] - 120.0 / 104.0) < 1e-9
    assert sorted(r["median"] for r in row["peer_runs"]) == [50.0, 50.0, 52.0, 52.0, 100.0, 104.0]
    assert row["target"] == "ratio >= 1.10" and row["met"] is True
    assert row["control"] == 1.0 and len(row["spread"]["ours"]["processes"]) == 4
    text = report.markdown(suite.report)
    assert "A/A: ours' odd-numbered processes against its even-numbered ones (2 against 2" in text
    assert "| peer as run | other peer variants | target | met |" in text
    assert f"| {other}; 2 threads, OMP_WAIT_POLICY=PASSIVE | {default} 100.0 | ratio >= 1.10 |" in text
    made.clear()
    fixed = run.Suite(run.parse_args(["--work_dir", str(tmp_path), "--reps", "1", "--warmup", "1",
                                      "--peer_setting", "fixed"]), "test")
    fixed.data = suite.data
    fixed.train(model, 64)
    assert sorted(w.side for w in made) == sorted(["ours", "peer", f"peer:{other}"] * 4)
    assert all(w.setting is None for w in made)
    assert fixed.report["cases"][0].get("peer_setting") is None


def test_ab_runs_each_tree_from_its_own_root_in_turns(monkeypatch, tmp_path, capsys):
    """bench.ab with fake workers of known speed: both trees' processes take
    turns, each from its own source root, and the printed ratio is this/base."""
    from bench import ab
    base = tmp_path / "base"
    (base / "bench").mkdir(parents=True)
    with pytest.raises(SystemExit):
        ab.parse_args(["--base", str(base), "--model", "mlp", "--batch_size", "8"])
    (base / "bench" / "worker.py").write_text("")
    made = []

    class FakeWorker:
        def __init__(self, side, kind, model, batch, data_path, log, cwd, threads=0, root=None,
                     settings=()):
            self.root, self.rate, self.setup = root, 150.0 if root == ab.ROOT else 100.0, {}
            made.append(self)

        def run(self, n):
            return n / self.rate, n

        def close(self):
            self.closed = True

    monkeypatch.setattr(ab, "Worker", FakeWorker)
    monkeypatch.setattr("bench.data.data_path", lambda model, work_dir: str(tmp_path))
    assert ab.main(["--base", str(base), "--model", "mlp", "--batch_size", "8", "--reps", "3",
                    "--warmup", "1", "--work_dir", str(tmp_path)]) == 0
    assert sorted(w.root for w in made) == sorted([str(base), str(base), ab.ROOT, ab.ROOT])
    assert all(w.closed for w in made)
    out = capsys.readouterr().out
    assert "3 turns:" in out                                  # precise A/A: no further turns
    assert "base 100/s  this 150/s  this/base 1.500  (paired 1.500 ± 0.000)" in out
    assert "base A/A 1.000 ± 0.000  this A/A 1.000 ± 0.000" in out


def test_ab_gives_each_tree_its_settings(monkeypatch, tmp_path, capsys):
    """``--set`` and ``--base_set``: one setting against another, here in one
    tree (``--base .``): the workers get their side's settings, and each
    setting reaches the worker's command line and the config's options."""
    from bench import ab, measure, workload
    made = []

    class FakeWorker:
        def __init__(self, side, kind, model, batch, data_path, log, cwd, threads=0, root=None,
                     settings=()):
            self.root, self.settings, self.setup = root, list(settings), {}
            self.rate = 110.0 if "k=fast" in self.settings else 100.0
            made.append(self)

        def run(self, n):
            return n / self.rate, n

        def close(self):
            pass

    monkeypatch.setattr(ab, "Worker", FakeWorker)
    monkeypatch.setattr("bench.data.data_path", lambda model, work_dir: str(tmp_path))
    args = ["--base", ab.ROOT, "--model", "mlp", "--batch_size", "8", "--reps", "3",
            "--warmup", "1", "--work_dir", str(tmp_path)]
    for bad in ("k", "=v", "--k=v"):
        with pytest.raises(SystemExit):
            ab.parse_args(args + ["--set", bad])
    assert ab.main(args + ["--set", "k=fast", "--set", "j=1", "--base_set", "k=slow"]) == 0
    assert sorted(str(w.settings) for w in made) == sorted(
        [str(["k=slow"])] * 2 + [str(["k=fast", "j=1"])] * 2)
    out = capsys.readouterr().out
    assert "base: k=slow" in out and "this: k=fast j=1" in out and "this/base 1.100" in out

    seen = _started_workers(monkeypatch)
    measure.Worker("ours", "predict", "m", 8, "d", str(tmp_path / "w.log"), str(tmp_path),
                   settings=["predict_mlp=graph", "x=a=b"]).close()
    assert seen[0][0][-4:] == ["--set", "predict_mlp=graph", "--set", "x=a=b"]
    assert workload.setting_args(["predict_mlp=graph", "x=a=b"]) == [
        "--predict_mlp", "graph", "--x", "a=b"]
    for bad in ("predict_mlp", "=graph", "--predict_mlp=graph"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            workload.setting_args([bad])


def test_ab_takes_further_turns_while_an_a_a_control_is_imprecise(monkeypatch, tmp_path, capsys):
    """A tree whose second process alternates between two speeds keeps its A/A
    error above --aa_se, so the trees take turns up to --max_reps."""
    from bench import ab
    base = tmp_path / "base"
    (base / "bench").mkdir(parents=True)
    (base / "bench" / "worker.py").write_text("")
    made = []

    class FakeWorker:
        def __init__(self, side, kind, model, batch, data_path, log, cwd, threads=0, root=None,
                     settings=()):
            self.rate, self.calls, self.flip = 100.0, 0, root == ab.ROOT and len(made) == 3
            self.setup = {}
            made.append(self)

        def run(self, n):
            self.calls += 1
            return n / (self.rate * (1.3 if self.flip and self.calls % 2 else 1.0)), n

        def close(self):
            pass

    monkeypatch.setattr(ab, "Worker", FakeWorker)
    monkeypatch.setattr("bench.data.data_path", lambda model, work_dir: str(tmp_path))
    args = ["--base", str(base), "--model", "mlp", "--batch_size", "8", "--reps", "3",
            "--warmup", "1", "--work_dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        ab.parse_args(args + ["--max_reps", "2"])
    assert ab.parse_args(args).max_reps == 9
    assert ab.main(args + ["--max_reps", "7"]) == 0
    out = capsys.readouterr().out
    assert "7 turns:" in out and "base A/A 1.000 ± 0.000" in out


def test_a_paired_ratio_is_the_geometric_mean_of_the_turns_ratios():
    from bench.measure import paired_ratio
    ratio, se = paired_ratio([2.0, 4.0], [1.0, 2.0])
    assert ratio == pytest.approx(2.0) and se == pytest.approx(0.0)
    ratio, se = paired_ratio([1.0, 4.0], [1.0, 1.0])         # log ratios 0 and ln 4
    assert ratio == pytest.approx(2.0) and se == pytest.approx(math.log(2.0))
    assert paired_ratio([3.0], [2.0]) == (pytest.approx(1.5), None)
    with pytest.raises(ValueError, match="no turn"):
        paired_ratio([], [])


def test_the_turns_put_ours_two_processes_after_the_same_processes():
    """Whoever runs just before a process leaves it some of its load: over the
    turns, ours' two processes must each follow every other process (and
    itself) as often as the other does, or the A/A control reads the order."""
    from collections import Counter
    from bench.measure import turn_order
    sides = ["ours#1", "peer@0#1", "peer@1#1", "peer:b@0#1", "ours#2"]
    stream = [side for rep in range(8) for side in turn_order(sides, rep)]   # the cycle twice
    after = {side: Counter(stream[i - 1] for i in range(len(stream)) if stream[i] == side)
             for side in sides}
    swap = {"ours#1": "ours#2", "ours#2": "ours#1"}
    assert after["ours#2"] == Counter({swap.get(s, s): n for s, n in after["ours#1"].items()})
    assert after["ours#1"] == Counter({"ours#1": 2, "ours#2": 2, "peer@0#1": 2, "peer:b@0#1": 2})
    for rep in range(8):                     # every side once a turn
        assert sorted(turn_order(sides, rep)) == sorted(sides)


def test_the_turns_put_ours_halves_after_the_same_processes():
    """With four processes of ours, two before the peer's and two after, the
    A/A control's halves (odd- and even-numbered processes) follow each
    process as often as each other: the four-turn cycle runs twice and the
    second is counted, where every turn has a predecessor."""
    from collections import Counter
    from bench import run
    from bench.measure import turn_order
    suite_labels = run.Suite.labels
    args = run.parse_args(["--threads", "2"])
    assert args.processes == 4 and run.parse_args(["--quick"]).processes == 2
    fake = type("S", (), {"args": args})()
    sides, _ = suite_labels(fake, MODEL, 4)
    assert sides[:2] == ["ours#1", "ours#2"] and sides[-2:] == ["ours#3", "ours#4"]
    stream = [side for rep in range(8) for side in turn_order(sides, rep, ends=2)]

    def after(half):
        kind = (lambda s: "ours" if s.startswith("ours#") else s)
        return Counter(kind(stream[i - 1]) for i in range(4 * len(sides), len(stream))
                       if stream[i] in half)

    assert after({"ours#1", "ours#3"}) == after({"ours#2", "ours#4"})
    assert after({"ours#1", "ours#3"})[sides[2]] > 0 and after({"ours#2", "ours#4"})[sides[-3]] > 0
    for rep in range(8):
        assert sorted(turn_order(sides, rep, ends=2)) == sorted(sides)
    assert turn_order(["a", "b", "c", "d", "e"], 2, ends=2) == ["e", "d", "c", "b", "a"]
    assert turn_order(["a", "b", "c", "d", "e"], 2, ends=1) == ["e", "b", "c", "d", "a"]
    with pytest.raises(SystemExit):
        run.parse_args(["--processes", "3"])           # halves must be equal


def test_the_aa_control_compares_ours_halves():
    """Per turn each half's rate is the geometric mean of its processes'; the
    control pairs the halves turn by turn. Two processes: first against second."""
    from bench import ab, run
    from bench.measure import halves_control, paired_ratio, turn_means
    rates = {"ours#1": [4.0, 8.0], "ours#2": [1.0, 2.0], "ours#3": [1.0, 2.0], "ours#4": [4.0, 8.0],
             "peer@0#1": [9.0, 9.0]}
    assert turn_means(rates, ["ours#1", "ours#2"]) == [pytest.approx(2.0), pytest.approx(4.0)]
    assert run.aa_control(rates) == (pytest.approx(1.0), pytest.approx(0.0))
    rates["ours#3"] = [4.0, 2.0]                           # odd half: sqrt(16), sqrt(16)
    ratio, se = run.aa_control(rates)                      # even half: 2, 4
    assert (ratio, se) == paired_ratio([4.0, 4.0], [2.0, 4.0])
    two = {"this#1": [3.0, 3.0], "this#2": [1.0, 3.0], "base#1": [2.0], "base#2": [2.0]}
    assert halves_control(two, "this") == paired_ratio([3.0, 3.0], [1.0, 3.0])
    assert ab.aa_controls({**two, "base#1": [2.0, 2.0], "base#2": [2.0, 2.0]}, 2)["base"][0] == 1.0
    with pytest.raises(ValueError, match="needs 2"):
        halves_control({"ours#1": [1.0]}, "ours")


def test_every_worker_of_a_case_warms_up_as_long_as_the_longest_asks():
    """A worker's set-up may ask for more warm-up units (a training epoch's
    end); every worker of the case then warms up that long, a worker that
    does not ask (an older tree's) included, and --warmup stays the least."""
    from bench.measure import interleaved

    class FakeWorker:
        def __init__(self, setup):
            self.setup, self.runs = setup, []

        def run(self, n):
            self.runs.append(n)
            return n / 1000.0, n

    for warmup, asked, first in ((5, 62, 62), (100, 62, 100)):
        workers = {"a": FakeWorker({"warmup_units": asked}), "b": FakeWorker({})}
        raw = interleaved(workers, warmup, reps=2, target_seconds=0.01)
        assert [w.runs[0] for w in workers.values()] == [first, first]
        assert all(len(r["rates"]) == 2 for r in raw.values())


def test_a_training_workload_asks_to_warm_up_past_its_first_epoch(tmp_path):
    """Ours' training workload asks for its first epoch and the next one's
    first graph call (at 4 steps a call, an epoch's last steps that do not
    fill a call go through a one-step graph, compiled when first used), the
    peer's for its first epoch and one step. A unit of work counts the
    samples of the whole calls it ran."""
    from bench import data, workload
    from src.engine.trainer import AUTO_STEPS
    path = data.data_path(MODEL, str(tmp_path), quick=True, log=lambda *a: None)
    batch = 512                                 # the CPU config's steps_per_call 0: 4 a call
    ours = workload.Ours("train", MODEL, batch, path)
    steps = sum(1 for _ in ours._train_reader().epoch(1))
    assert steps % AUTO_STEPS and ours.warmup_units == steps + AUTO_STEPS
    seconds, samples = ours.run(ours.warmup_units)
    assert samples == ours.warmup_units * batch and seconds > 0
    # the next epoch's second call: a unit of work runs whole calls and counts
    # the steps it ran, never steps a previous unit computed ahead
    calls = ([AUTO_STEPS] * (steps // AUTO_STEPS) + [1] * (steps % AUTO_STEPS)) * 4
    position = 1                                  # the warm-up ran epoch 2's first call
    for n in (1, AUTO_STEPS + 1, 2, steps):
        done = 0
        while done < n:
            done, position = done + calls[position], position + 1
        assert ours.run(n)[1] == done * batch
    if HAVE_TORCH:
        peer = workload.Peer("train", MODEL, batch, path, threads=1)
        assert peer.warmup_units == steps + 1


def test_a_training_case_takes_turns_until_its_aa_is_precise(monkeypatch, tmp_path):
    """Fake workers: ours' first process alternates between two speeds, its
    second is steady. The case takes turns past --reps until the A/A's
    standard error is at most --aa_se, or --max_reps; steady processes stop
    at --reps."""
    from bench import report, run
    from bench.measure import paired_ratio

    class FakeWorker:
        def __init__(self, side, kind, model, batch, data_path, log, cwd, threads=0, setting=None,
                     variant=None):
            self.calls, self.setup = 0, {}
            self.speeds = speeds.pop(0)

        def run(self, n):
            self.calls += 1
            return n / self.speeds[self.calls % len(self.speeds)], n

        def close(self):
            pass

    monkeypatch.setattr(run, "Worker", FakeWorker)

    def case(aa_se, max_reps, first):
        speeds[:] = [first, [110.0]]
        args = run.parse_args(["--work_dir", str(tmp_path), "--reps", "3", "--warmup", "1",
                               "--sides", "ours", "--groups", "train", "--aa_se", str(aa_se),
                               "--max_reps", str(max_reps), "--processes", "2"])
        suite = run.Suite(args, "test")
        suite.data = lambda m: str(tmp_path)
        suite.train(MODEL, 64)
        return suite.report["cases"][0], suite.report

    speeds = []
    row, _ = case(0.02, 45, [100.0, 120.0])
    rates, turns = row["spread"]["ours"]["rates"], row["turns"]
    first, second = rates[:turns], rates[turns:]
    assert len(second) == turns > 3
    errors = [paired_ratio(first[:n], second[:n])[1] for n in range(3, turns + 1)]
    assert errors[-1] <= 0.02 < min(errors[:-1])          # stopped at the first precise turn
    ratio, se = paired_ratio(first, second)
    assert row["control"] == pytest.approx(ratio) and row["control_se"] == pytest.approx(se)
    row, rep = case(0.001, 30, [100.0, 120.0])               # never that precise: the cap
    assert row["turns"] == 30 and row["control_se"] > 0.001
    assert "up to 30): 30 turns in this run" in report.markdown(rep)
    assert f"| {row['control']:.3f} ± {row['control_se']:.3f} |" in report.markdown(rep)
    row, _ = case(0.02, 45, [110.0])                         # steady: --reps turns
    assert row["turns"] == 3 and row["control"] == pytest.approx(1.0) and row["control_se"] == 0.0
    with pytest.raises(SystemExit):
        run.parse_args(["--reps", "15", "--max_reps", "10"])
    assert run.parse_args(["--reps", "4"]).max_reps == 12
    assert run.parse_args(["--quick"]).max_reps == 1


@pytest.mark.skipif(not HAVE_TORCH, reason="the products are captured from PyTorch")
def test_the_ceiling_times_each_captured_product():
    """A step of 8 -> 4 -> 1 on 5 rows runs five products (the input needs no
    gradient), each captured with its shapes and transposed operands; the
    ceiling is the batch over the products' summed time."""
    import torch
    from bench import ceiling
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    x = torch.randn(5, 8)
    products, convolutions = ceiling.captured(lambda: net(x).sum().backward())
    assert convolutions == 0
    assert products == {(False, (5, 8), (8, 4), False, True): 1,    # x W1^T (addmm)
                        (False, (5, 4), (4, 1), False, True): 1,    # h W2^T
                        (False, (5, 1), (1, 4), False, False): 1,   # dh = dy W2
                        (False, (1, 5), (5, 4), False, False): 1,   # dW2 = dy^T h (one row)
                        (False, (4, 5), (5, 8), True, False): 1}    # dW1 = dh^T x
    assert sum(ceiling.flops(p) * n for p, n in products.items()) == 152 * 5   # as counted()
    a, b = torch.randn(3, 2, 4), torch.randn(3, 5, 4).transpose(1, 2)
    batched, _ = ceiling.captured(lambda: torch.bmm(a, b))
    assert batched == {(True, (3, 2, 4), (3, 4, 5), False, True): 1}
    assert ceiling.flops((True, (3, 2, 4), (3, 4, 5), False, True)) == 2 * 3 * 2 * 4 * 5
    rows, total = ceiling.ceiling(products, 5, seconds=lambda p: 1e-3 * ceiling.flops(p))
    assert [row["flops"] for row in rows] == sorted((row["flops"] for row in rows), reverse=True)
    assert all(row["gflop_per_s"] == pytest.approx(1e-6) for row in rows)
    assert total["flops_per_sample"] == pytest.approx(152)
    assert total["samples_per_s"] == pytest.approx(5 / 0.76)
    assert ceiling.numpy_seconds((True, (3, 2, 4), (3, 4, 5), False, True), reps=2) > 0
    with torch.inference_mode():                          # linear is not decomposed there
        predicted, _ = ceiling.captured(lambda: net(x))
    assert predicted == {(False, (5, 8), (8, 4), False, True): 1,
                         (False, (5, 4), (4, 1), False, True): 1}


def test_reader_cost_alternates_blocks_and_reports_ms_a_step():
    """bench.reader_cost's blocks: whole calls until a block's steps are done,
    the sides taking turns to go first, time per step in ms."""
    from bench.reader_cost import alternate
    now, order = [0.0], []

    def stream(name, steps_a_call, seconds_a_call):
        while True:
            order.append(name)
            now[0] += seconds_a_call
            yield [0.5] * steps_a_call

    streams = {"reader": stream("reader", 2, 1.0), "fixed": stream("fixed", 1, 3.0)}
    times = alternate(streams, steps=5, blocks=3, clock=lambda: now[0])
    assert times == {"reader": [500.0] * 3, "fixed": [3000.0] * 3}   # 3 calls of 2 / 5 of 1
    assert order == ["reader"] * 3 + ["fixed"] * 5 + ["fixed"] * 5 + ["reader"] * 3 \
        + ["reader"] * 3 + ["fixed"] * 5
    with pytest.raises(ValueError, match="two streams"):
        alternate({"reader": streams["reader"]}, steps=5, blocks=1)
    with pytest.raises(ValueError, match="steps >= 1"):
        alternate(streams, steps=0, blocks=1)
