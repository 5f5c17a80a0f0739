"""C++ inference on CPU: ascend310_infer/'s program with MindSpore Lite.

For a model and batch size: a freshly initialised network (the weights do not
change the speed) is saved as a checkpoint and exported to ONNX by export.py
in a child process, with copies of one test batch as the program's .bin
inputs; the program is built against the Lite SDK (scripts/fetch_lite_sdk.sh,
cached), the ONNX converted to a Lite MindIR, and the program run ``reps``
times. Each run prints the median time of Model::Predict over its batches;
the figure is the median of the runs. Exports are cached in the work folder
with a fingerprint of the code and configs they were made from, and made
again when that changes.

    python -m bench.infer_cpp --prepare --model NAME --batch_size 1 --data_path DIR --out DIR
"""
import argparse
import glob
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys

from bench.workload import CPU_CONFIG, ROOT

PYTHON = sys.executable
OUT_BIN = os.path.join(ROOT, "ascend310_infer", "out")
_built = {}


def _files_for(batch, quick):
    if quick:
        return 3
    return 200 if batch <= 64 else 20


def prepare(model, batch, data_path, out_dir, files):
    """(child process) checkpoint, ONNX export and ``files`` copies of a test batch."""
    import numpy as np
    import export
    from bench.workload import fixed_batch, load_cfg
    from src.engine.checkpoint import save_checkpoint
    from src.engine.runtime import setup_runtime
    from src.engine.setup import build_network
    from src.pipeline import model_and_data
    from src.infer_io import batch_file
    os.makedirs(out_dir, exist_ok=True)
    cfg = load_cfg(model, batch, data_path)
    setup_runtime(cfg)
    spec, fmap = model_and_data(cfg)
    ckpt = os.path.join(out_dir, f"{model}.ckpt")
    save_checkpoint(build_network(spec, cfg, fmap), ckpt, model, 0, 0, config=cfg.to_dict(),
                    data_fingerprint=fmap.get("fingerprint"),
                    encoding_fingerprint=fmap.get("encoding_fingerprint"))
    base = os.path.join(out_dir, model)
    status = export.main(["--config_path", CPU_CONFIG, "--model", model, "--data_path", data_path,
                          "--ckpt_file", ckpt, "--file_format", "ONNX", "--export_batch_size",
                          str(batch), "--file_name", base])
    if status:
        raise RuntimeError(f"export.py failed with status {status}")
    inputs = fixed_batch(spec, fmap, cfg, batch)
    signature = spec.input_signature(fmap)
    names = [n for n, _, _ in signature]
    for (name, dtype, _), array in zip(signature, inputs):
        os.makedirs(os.path.join(out_dir, "inputs", name), exist_ok=True)
        for i in range(files):
            np.asarray(array, dtype).tofile(batch_file(os.path.join(out_dir, "inputs"), name, model, i))
    with open(os.path.join(out_dir, "inputs", "order.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def code_fingerprint(root=ROOT):
    """A hash of what an export depends on: export.py, the configs and src/."""
    paths = [os.path.join(root, "export.py")] + sorted(glob.glob(os.path.join(root, "default_config*.yaml")))
    paths += sorted(glob.glob(os.path.join(root, "src", "**", "*.py"), recursive=True))
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def _run(cmd, what, log_path, **kw):
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, **kw)
    if done.returncode:
        raise RuntimeError(f"{what} failed (exit {done.returncode}; log: {log_path})")
    return done.stdout


def _program(work, log):
    """Build ascend310_infer/ against the Lite SDK once per run of the suite."""
    if "sdk" not in _built:
        logs = os.path.join(work, "logs")
        log("cpp: fetching the MindSpore Lite SDK (cached) and building ascend310_infer/")
        sdk = _run(["bash", os.path.join(ROOT, "scripts", "fetch_lite_sdk.sh")], "fetching the Lite SDK",
                   os.path.join(logs, "cpp_fetch.log")).strip().splitlines()[-1]
        _run(["bash", os.path.join(ROOT, "ascend310_infer", "build.sh"), sdk, "mindspore-extendrt_python"],
             "building ascend310_infer", os.path.join(logs, "cpp_build.log"))
        _built["sdk"] = sdk
    return _built["sdk"]


def measure(model, batch, data_path, work, reps=5, quick=False, log=print):
    """``{"ms": median ms per batch, "rate": samples/s, "runs": [ms per run]}``."""
    work = os.path.abspath(work)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    out = os.path.join(work, "cpp" + ("_quick" if quick else ""), f"{model}_{batch}")
    files = _files_for(batch, quick)
    env = dict(os.environ, PYTHONPATH=ROOT, GLOG_v=os.environ.get("GLOG_v", "3"))
    tag = f"cpp_{model}_{batch}"
    stamp, fingerprint = os.path.join(out, "fingerprint"), code_fingerprint()
    made_from = None
    if os.path.isfile(stamp):
        with open(stamp) as f:
            made_from = f.read().strip()
    if made_from != fingerprint or not os.path.isfile(os.path.join(out, "inputs", "order.txt")):
        shutil.rmtree(out, ignore_errors=True)          # an export of other code, or none
        _run([PYTHON, "-m", "bench.infer_cpp", "--prepare", "--model", model, "--batch_size", str(batch),
              "--data_path", data_path, "--out", out, "--files", str(files)],
             f"exporting {model} batch {batch}", os.path.join(logs, tag + "_export.log"),
             cwd=os.path.join(work, "cwd"), env=env)
        with open(stamp, "w") as f:
            f.write(fingerprint + "\n")
    _program(work, log)
    lite = os.path.join(out, f"{model}_lite")
    if not os.path.isfile(lite + ".mindir"):
        _run([os.path.join(OUT_BIN, "convert_onnx"), os.path.join(out, f"{model}.onnx"), lite],
             f"converting {model}.onnx", os.path.join(logs, tag + "_convert.log"))
    with open(os.path.join(out, "inputs", "order.txt")) as f:
        inputs = ",".join(os.path.join(out, "inputs", n) for n in f.read().split())
    runs = []
    for _ in range(reps):
        text = _run([os.path.join(OUT_BIN, "main"), f"--mindir_path={lite}.mindir", f"--input_paths={inputs}",
                     "--device_target=CPU", f"--result_dir={out}/result_Files", f"--time_dir={out}/time_Result"],
                    f"running {model} batch {batch}", os.path.join(logs, tag + "_run.log"))
        found = re.search(r"median time: ([0-9.eE+-]+) ms", text)
        if not found:
            raise RuntimeError(f"the inference program printed no median time: {text!r}")
        runs.append(float(found.group(1)))
    ms = statistics.median(runs)
    return {"ms": ms, "rate": 1000.0 * batch / ms, "runs": runs, "batches_per_run": files}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--batch_size", type=int, required=True)
    p.add_argument("--data_path", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--files", type=int, default=20)
    a = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    prepare(a.model, a.batch_size, a.data_path, a.out, a.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
