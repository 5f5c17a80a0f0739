r"""Export a checkpoint to MINDIR, AIR or ONNX at a chosen batch size, and
check that the exported MindIR gives the checkpoint's outputs.

    python export.py --config_path default_config_cpu.yaml --data_path DIR \
        --ckpt_file FILE --file_format MINDIR --export_batch_size 1

The model and its sizes come from the checkpoint; the file is written beside
it as ``<model>.mindir`` unless ``--file_name`` names another path.
"""
import os
import sys

import numpy as np

from src.config import help_for, load_config
from src.engine.cli import run_main
from src.fileio import remove_stale_temps, replace_atomic

_SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


def example_inputs(signature, batch_size, seed=0):
    """Random inputs of the exported shapes (ints in [0, 2), floats normal)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for _, dtype, shape in signature:
        full = (batch_size,) + tuple(shape)
        if np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, 2, full).astype(dtype))
        else:
            arrays.append(rng.standard_normal(full).astype(dtype))
    return arrays


def check_mindir(path, predictor, arrays):
    """Max abs difference between the loaded MindIR and the network."""
    import mindspore as ms
    graph = ms.nn.GraphCell(ms.load(path))
    tensors = [ms.Tensor(a) for a in arrays]
    exported = graph(*tensors).asnumpy()
    expected = predictor(*tensors).asnumpy()
    return float(np.max(np.abs(exported - expected)))


def main(argv=None):
    cfg = load_config(description=__doc__, argv=argv, shown=help_for((
        "data_path", "ckpt_file", "file_name", "file_format", "export_batch_size")))
    # MindSpore loads only now: --help and bad options answer at once
    import mindspore as ms
    from src.pipeline import trained_network
    bs = int(cfg.export_batch_size)
    if cfg.file_format == "AIR" and cfg.device_target != "Ascend":
        raise ValueError(f"file_format AIR needs MindSpore's Ascend backend (device_target "
                         f"Ascend, default_config.yaml), not {cfg.device_target}; export MINDIR "
                         "or ONNX here, or AIR on an Ascend machine")
    cfg, spec, fmap, network, _ = trained_network(cfg, overrides_for="export")
    network.set_train(False)
    predictor = spec.predictor(network)
    signature = spec.input_signature(fmap)
    arrays = example_inputs(signature, bs)
    base = cfg.file_name or os.path.join(os.path.dirname(os.path.abspath(cfg.ckpt_file)), spec.name)
    if os.path.dirname(base):
        os.makedirs(os.path.dirname(base), exist_ok=True)
    path = base + _SUFFIX[cfg.file_format]
    # exported under a temporary name and renamed: a killed export leaves no partial model,
    # and what a killed one left is removed here
    remove_stale_temps(os.path.dirname(os.path.abspath(path)))

    def write(tmp):         # MindSpore keeps a file name that already ends in the suffix
        ms.export(predictor, *[ms.Tensor(a) for a in arrays], file_name=tmp,
                  file_format=cfg.file_format)
        if not os.path.isfile(tmp):
            raise RuntimeError(f"export reported success but {path} was not written")
    replace_atomic(path, write)
    shapes = ", ".join(f"{n} {np.dtype(d).name}[{bs}, {', '.join(map(str, s))}]"
                       for n, d, s in signature)
    print(f"exported {path}: inputs {shapes}", flush=True)
    if cfg.file_format == "MINDIR":
        diff = check_mindir(path, predictor, arrays)
        print(f"parity check: max |exported - network| = {diff:.3g}", flush=True)
        if diff > 1e-4:
            raise RuntimeError(f"the exported model disagrees with the network (max diff {diff})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
