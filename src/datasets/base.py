"""What a data set is to the engine: one object per data set, shared by every
model trained on it.

A :class:`DataSet` knows its converter (raw files -> MindRecord splits plus
feature map), how to read the feature map back, the MindRecord columns, how
a batch of those columns becomes network inputs and labels, the task names
and type, the export signature and a generator of synthetic raw files in the
real format. The converters themselves live in :mod:`src.data`, the
generators in :mod:`src.synth`; this module imports neither MindSpore nor
them until asked.
"""
from dataclasses import dataclass
from typing import Callable


def columns_of(fmap):
    """``{column: width}`` of the MindRecord columns, from the feature map."""
    return {name: col["width"] for name, col in fmap["columns"].items()}


@dataclass(frozen=True)
class DataSet:
    name: str                       # also the config section of its conversion keys
    title: str                      # as users know it, e.g. "Census-Income"
    convert: Callable               # cfg -> feature map (prepare_data.py)
    load_feature_map: Callable      # data_dir -> feature map dict
    make_batch: Callable            # (batch dict, feature map) -> (inputs..., labels) numpy
    input_signature: Callable       # feature map -> [(name, numpy dtype, shape without batch)]
    task_names: Callable            # feature map -> list of task names
    synthetic: Callable             # (raw_dir, seed, scale) -> raw files in the real format
    convert_keys: tuple = ()        # the config keys convert reads (besides the paths and seed)
    task_type: str = "binary"       # "binary": (B, T) logits; "multiclass": (B, T, C)
    # feature map -> per-sample shape of the predictor's output; default (tasks,)
    output_shape: Callable = None

    def columns(self, fmap):
        """``{column: width}`` the reader reads."""
        return columns_of(fmap)

    def output_dims(self, fmap):
        """Per-sample output shape of the predictor."""
        if self.output_shape is not None:
            return tuple(self.output_shape(fmap))
        return (len(self.task_names(fmap)),)
