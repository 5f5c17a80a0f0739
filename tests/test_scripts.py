"""The standalone launch scripts: argument checks and a real CPU run."""
import json
import os
import shutil
import subprocess

import pytest

import prepare_data
from src.synth import census as census_synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name, *args, env=None):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", name), *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env=None if env is None else dict(os.environ, **env))


@pytest.mark.parametrize("name", ["run_standalone_train_cpu.sh", "run_standalone_eval_gpu.sh",
                                  "run_standalone_train_ascend.sh"])
def test_usage_on_wrong_argument_count(name):
    result = _script(name, "only-one")
    assert result.returncode == 2 and "Usage: bash " + name in result.stderr


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(ROOT, "scripts"))
                                         if n.endswith(".sh") and not n.startswith("_")))
def test_help_describes_the_script_and_does_nothing(name, tmp_path):
    """--help prints the script's header comment (what it does, its usage) and
    exits 0, without acting: no download, no folder named --help."""
    if name in ("run_tests.sh", "run_bench.sh", "setup_env.sh"):
        pytest.skip("passes its options to pytest / bench.run, or takes none")
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", name), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(ROOT, "scripts", name)) as fh:
        first = fh.read().splitlines()[1].lstrip("# ")
    assert done.stdout.startswith(first) and "Usage: bash " in done.stdout, done.stdout
    assert not done.stdout.count("\n#") and os.listdir(tmp_path) == []


def test_bad_arguments_are_named(tmp_path):
    result = _script("run_standalone_train_cpu.sh", tmp_path / "missing", 0, tmp_path / "ckpt")
    assert result.returncode == 2 and "DATA_PATH: directory" in result.stderr
    result = _script("run_standalone_train_cpu.sh", tmp_path, "x", tmp_path / "ckpt")
    assert result.returncode == 2 and "DEVICE_ID must be a non-negative integer" in result.stderr


def test_train_then_eval_on_cpu(tmp_path):
    census_synth.generate_dataset(str(tmp_path / "raw"), train_rows=3000, test_rows=1000, seed=2)
    prepare_data.main(["--config_path", os.path.join(ROOT, "default_config_cpu.yaml"),
                       "--raw_data_path", str(tmp_path / "raw"), "--data_path", str(tmp_path / "mr")])
    ckpt = tmp_path / "ckpt"
    train = _script("run_standalone_train_cpu.sh", tmp_path / "mr", 0, ckpt, "--",
                    "--epoch_size", 1, "--batch_size", 256)
    assert train.returncode == 0, train.stderr
    assert "training finished after epoch 1" in (ckpt / "train.log").read_text()
    evaluated = _script("run_standalone_eval_cpu.sh", tmp_path / "mr", ckpt / "best_avg_auc.ckpt", 0)
    assert evaluated.returncode == 0, evaluated.stderr
    with open(ckpt / "eval_best_avg_auc_test.json") as fh:
        assert set(json.load(fh)["metrics"]) >= {"income_auc", "marital_auc"}
    failed = _script("run_standalone_eval_cpu.sh", tmp_path / "mr", ckpt / "config.yaml", 0)
    assert failed.returncode != 0 and "damaged or not a MindSpore checkpoint" in failed.stdout


def test_download_script_fetches_and_checks_files(tmp_path):
    """download_mnist.sh through a file:// mirror: files arrive whole, a damaged
    gzip is refused and leaves nothing that looks complete."""
    from src.synth.mnist import generate_idx
    mirror = tmp_path / "mirror"
    generate_idx(str(mirror), train=20, test=10)
    env = dict(os.environ, MNIST_URL=f"file://{mirror}")
    run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "download_mnist.sh"), str(tmp_path / "a")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    for name in os.listdir(mirror):
        assert (tmp_path / "a" / name).read_bytes() == (mirror / name).read_bytes()
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "download_mnist.sh"), str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode != 0 and "not a valid gzip file" in run.stderr
    assert not (tmp_path / "b" / "t10k-labels-idx1-ubyte.gz").exists()


def _census_results(tmp_path, models, refit=False):
    """scripts/run_census_results.sh on a small generated pair, for ``models``
    (None: every Census-Income model, the script's default): one table per
    model with both seeds' test figures, and the baselines; with ``refit``
    (REFIT=1) also each seed's final fit on train and val and its table."""
    from src.registry import models_on
    census_synth.generate_dataset(str(tmp_path / "raw"), train_rows=2400, test_rows=800, seed=3)
    env = {} if models is None else {"MODELS": ",".join(models)}
    result = _script("run_census_results.sh", tmp_path / "raw", tmp_path / "out", "1,2", "--",
                     "--epoch_size", 1, "--batch_size", 256, "--log_every_steps", 1000,
                     env=dict(env, REFIT="1") if refit else env or None)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "out" / "baselines.json") as fh:
        baselines = json.load(fh)
    assert {"logistic_regression/income", "gradient_boosting/marital"} <= set(baselines)
    assert all(("refit_test_auc" in row) == refit for row in baselines.values())
    expected = models_on("census") if models is None else models
    tables = [f"{model}{end}" for model in expected for end in ("", "_refit")[:1 + refit]]
    assert sorted(p.name for p in (tmp_path / "out").glob("results_*.md")) == sorted(
        f"results_{name}.md" for name in tables)
    runs = tmp_path / "out" / "runs"
    for model in expected:
        table = (tmp_path / "out" / f"results_{model}.md").read_text()
        assert "income_auc" in table and f"{model}_s1" in table and f"{model}_s2" in table
        assert (runs / f"{model}_s2" / "eval_best_avg_auc_test.json").is_file()
        if refit:     # 1,800 training + 600 validation rows: 9 steps of 256
            table = (tmp_path / "out" / f"results_{model}_refit.md").read_text()
            assert f"{model}_s1_refit: eval_{model}-1_9_test" in table
            assert (runs / f"{model}_s2_refit" / f"eval_{model}-1_9_test.json").is_file()


def test_census_results_script_runs_the_models_it_is_given_and_the_baselines(tmp_path):
    from src.registry import models_on
    result = _script("run_census_results.sh", tmp_path / "raw", tmp_path / "out", "1,x")
    assert result.returncode == 2 and "SEEDS must be comma-separated integers" in result.stderr
    (tmp_path / "raw").mkdir()
    result = _script("run_census_results.sh", tmp_path / "raw", tmp_path / "out",
                     env={"MODELS": "no_such_model"})
    assert result.returncode == 2 and "MODELS: 'no_such_model' is not a Census-Income model" in result.stderr
    result = _script("run_census_results.sh", tmp_path / "raw", tmp_path / "out", env={"REFIT": "yes"})
    assert result.returncode == 2 and "REFIT must be 0 or 1, got 'yes'" in result.stderr
    _census_results(tmp_path, [models_on("census")[-1]], refit=True)


@pytest.mark.slow
def test_census_results_script_runs_every_model_by_default(tmp_path):
    _census_results(tmp_path, None)


def test_hold_lock_makes_two_runs_of_a_step_take_turns(tmp_path):
    """scripts/_common.sh's hold_lock (the SDK fetch uses it): a second run
    waits until the first ends instead of writing the same files at once."""
    if shutil.which("flock") is None:
        pytest.skip("no flock(1) here: hold_lock then takes no lock")
    step = ('source "$1/scripts/_common.sh"; hold_lock "$2/step.lock"; '
            'echo "$3 start" >> "$2/log"; sleep 1; echo "$3 end" >> "$2/log"')
    runs = [subprocess.Popen(["bash", "-c", step, "step", ROOT, str(tmp_path), name])
            for name in ("a", "b")]
    assert [run.wait(timeout=30) for run in runs] == [0, 0]
    lines = (tmp_path / "log").read_text().split()
    pairs = [(lines[i], lines[i + 2]) for i in range(0, 8, 4)]
    assert all(a == b for a, b in pairs) and sorted(p[0] for p in pairs) == ["a", "b"], lines
