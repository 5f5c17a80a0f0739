"""Every entry point answers --help (and a bad option) from the config
loader alone: MindSpore and scikit-learn load only after the options are
read, so help comes in well under 2 seconds."""
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRIES = ["train.py", "eval.py", "export.py", "preprocess.py", "postprocess.py",
           "prepare_data.py"]
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("mindspore", "sklearn", "torch") if m in sys.modules)
print("EXIT", code, "HEAVY", ",".join(heavy) or "-", file=sys.stderr)
"""


def _probe(entry, *args):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, os.path.join(ROOT, entry), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT))
    return done, time.perf_counter() - start


@pytest.mark.parametrize("entry", ENTRIES)
def test_help_answers_before_mindspore_loads(entry):
    done, seconds = _probe(entry, "--help")
    assert "EXIT 0 HEAVY -" in done.stderr, done.stderr[-2000:]
    assert "--config_path" in done.stdout and "common options" in done.stdout
    assert seconds < 2.0, seconds


def test_a_bad_option_fails_before_mindspore_loads():
    done, _ = _probe("train.py", "--batch_size", "many")
    assert "error: --batch_size: expected int, got 'many'" in done.stderr
    assert "EXIT 2 HEAVY -" in done.stderr, done.stderr[-2000:]


def test_each_command_lists_the_options_it_uses():
    done, _ = _probe("postprocess.py", "--help")
    listed = sorted(line.split()[0] for line in done.stdout.splitlines()
                    if line.startswith("  --"))
    assert listed == ["--config_path", "--infer_data_path", "--result_path"], listed
    done, _ = _probe("prepare_data.py", "--help")
    assert "--raw_data_path" in done.stdout and "--learning_rate" not in done.stdout
    assert "--export_batch_size" not in _probe("train.py", "--help")[0].stdout
    export = _probe("export.py", "--help")[0].stdout
    assert "--file_format" in export and "--num_experts" in export and "--epoch_size" not in export
    # every key is still accepted: a full config file or a flag another command uses
    done, _ = _probe("postprocess.py", "--epoch_size", "3", "--infer_data_path", "/nonexistent")
    assert "unknown option" not in done.stderr and "EXIT 2" in done.stderr


def test_output_lines_carry_the_time():
    """run_main stamps every line an entry point prints (not its error lines)."""
    import io
    import re
    from src.engine.cli import TimedLines
    buffer = io.StringIO()
    out = TimedLines(buffer)
    print("one", file=out, flush=True)
    print("two\nthree", file=out)
    out.write("par")
    out.write("tial\n")
    print(file=out)
    lines = buffer.getvalue().split("\n")
    stamp = r"\d\d:\d\d:\d\d "
    for line, text in zip(lines, ["one", "two", "three", "partial"]):
        assert re.fullmatch(stamp + text, line), line
    assert lines[4:] == ["", ""]                    # an empty line stays empty


GENERATORS = [["-m", "src.synth.census"], ["-m", "src.synth.criteo"], ["-m", "src.synth.mnist"]]


@pytest.mark.parametrize("command", [["plot.py"], ["report.py"], ["-m", "src.baselines"],
                                     ["-m", "src.data.census_split"], ["-m", "src.data.criteo"]]
                         + GENERATORS)
def test_the_other_commands_help_is_not_time_stamped(command):
    """Help is not a log line: it goes out as argparse wrote it."""
    done = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, GLOG_v="3",
                                                            PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: "), done.stdout[:200]
    assert "--help" in done.stdout


def test_mindspore_call_stacks_are_cut_from_error_lines(capsys):
    """A bad-input error MindSpore raised carries its C++ call stack: the
    user's error line keeps the message alone."""
    from src.engine.cli import run_main

    def main(argv):
        raise ValueError("Only support export file in 'AIR' format with Ascend backend.\n\n"
                         "----------------------------------------------------\n"
                         "- C++ Call Stack: (For framework developers)\n"
                         "----------------------------------------------------\n"
                         "mindspore/ccsrc/frontend/jit/ps/executor/graph_executor_py.cc:694 ExportGraph\n")
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: Only support export file in 'AIR' format with Ascend backend.\n", err


def test_no_docstring_joins_its_example_lines():
    """A backslash at a line's end inside a plain docstring joins the two lines
    of a shell example in --help (export.py's once read ``DIR         --ckpt_file``):
    such docstrings are raw strings."""
    import ast
    import glob
    import re
    files = [f for pattern in ("*.py", "scripts/*.py", "src/**/*.py", "bench/**/*.py")
             for f in glob.glob(os.path.join(ROOT, pattern), recursive=True)]
    joined = []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
        tree = ast.parse(source)
        for node in [tree] + [n for n in ast.walk(tree)
                              if isinstance(n, (ast.FunctionDef, ast.ClassDef))]:
            if not (node.body and isinstance(node.body[0], ast.Expr)
                    and isinstance(node.body[0].value, ast.Constant)
                    and isinstance(node.body[0].value.value, str)):
                continue
            text = ast.get_source_segment(source, node.body[0].value)
            # an odd run of backslashes before a newline: a continuation, not a backslash
            if not text.lower().startswith("r") and re.search(r"(?<!\\)(\\\\)*\\\n", text):
                joined.append(f"{os.path.relpath(path, ROOT)}:{node.body[0].lineno}")
    assert len(files) > 50 and not joined, joined


@pytest.mark.parametrize("command,bad", list(zip(GENERATORS, (["--test_rows", "0"], ["--rows", "0"],
                                                              ["--train", "3"]))))
def test_a_generator_refuses_a_bad_size_in_one_line(command, bad, tmp_path):
    done = subprocess.run([sys.executable, *command, "--output_dir", str(tmp_path / "out"), *bad],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]         # "error: ..." or argparse's "x.py: error: ..."
    assert last.startswith("error: ") or ": error: " in last, last
    assert not os.path.exists(tmp_path / "out")
