"""scripts/quickstart.sh for every registered model, at the contract trial's
sizes (QUICKSTART_SMALL=1): generate, convert, train, evaluate, draw, export
and run the C++ program; it ends with the metrics line, and the C++ results
score what eval.py reports.

The first model of each data set runs by default; the others only with
``--slow`` (their quick start differs in the model alone, which the registry
contract tests already train, export and run from C++)."""
import json
import os
import re
import subprocess

import pytest

from src.registry import get_model_spec, model_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _models():
    seen = set()
    for name in model_names():
        data = get_model_spec(name).dataset.name
        yield pytest.param(name, marks=pytest.mark.slow) if data in seen else name
        seen.add(data)


@pytest.mark.parametrize("name", list(_models()))
def test_quickstart_runs_the_whole_job(name, tmp_path):
    work = tmp_path / "qs"
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "quickstart.sh"), name, str(work)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env=dict(os.environ, QUICKSTART_SMALL="1", GLOG_v="3"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.match(r"\d\d:\d\d:\d\d result \(test split,", last), last   # a time on every line
    assert f"{work}/output/best_" in last
    out = work / "output"
    assert {"metrics.jsonl", "steps.jsonl", "curves.png", "run.json"} <= set(os.listdir(out))
    with open(work / "infer" / "acc.log") as fh:
        cpp = json.loads(fh.read().splitlines()[1])
    evaluated = [f for f in os.listdir(out) if f.startswith("eval_") and f.endswith("_test.json")]
    with open(out / evaluated[0]) as fh:
        metrics = json.load(fh)["metrics"]
    assert set(cpp) == set(metrics)
    for key, value in metrics.items():
        assert cpp[key] == pytest.approx(value, abs=1e-5), key


def test_an_unknown_model_is_named():
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "quickstart.sh"), "resnet", "w"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "MODEL must be one of" in done.stderr


@pytest.mark.parametrize("argument", ["mmoee", "--small"])
def test_a_misspelt_model_or_an_option_runs_nothing(argument, tmp_path):
    """One argument that is no model, no existing folder and no path must not
    run the default model into a folder of that name."""
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "quickstart.sh"), argument],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert ("neither a model" in done.stderr) != ("unknown option" in done.stderr)
    assert not os.path.exists(os.path.join(ROOT, argument))
