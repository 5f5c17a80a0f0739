"""The model registry: models are plug-ins, found by looking.

A model is a folder ``src/<name>/`` holding its network and a ``spec.py``
that defines ``SPEC``, a :class:`ModelSpec`: the model's data set object
(:mod:`src.datasets`), how to build its network from the config and the
feature map, the interfaces that network declares to the engine
(:mod:`src.engine.interfaces`) and its export choices. The loss, the output
activation, the batches and the export signature follow from the data set.
Everything that runs a model looks it up here by the config's ``model`` key
and never branches on it; the list of models is the list of such folders.

Importing this module (or a spec) imports no MindSpore: the config loader,
which imports none either, uses it to find a model's data set section.
"""
import importlib
import os
from dataclasses import dataclass, field
from typing import Callable

SRC = os.path.dirname(os.path.abspath(__file__))
CAPABILITIES = {"sparse_table": "SparseTable", "regularised": "Regularised"}


@dataclass(frozen=True)
class Trial:
    """A small run of a model on its data set's generated data, in seconds on
    a CPU: what the registry contract tests (tests/test_registry_contract.py)
    train, resume, export and run for every registered model."""
    args: tuple                     # command-line overrides of default_config_cpu.yaml
    expect: dict                    # validation metric -> the value it must exceed
    epochs: int = 2
    data_scale: float = 0.1         # of the data set's synthetic default size
    prepare_args: tuple = ()        # overrides for prepare_data.py
    data_seed: int = 5              # of the generated raw files
    # overrides that make training deterministic (e.g. no dropout: after a resume
    # a dropout op draws other masks than the uninterrupted run), for the resume test
    deterministic_args: tuple = ()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dataset: object                 # a src.datasets.base.DataSet
    build_network: Callable         # (cfg, feature_map) -> nn.Cell producing logits
    title: str = ""                 # as papers name it, e.g. "DSelect-k"
    # interfaces the network declares to the engine (keys of CAPABILITIES)
    capabilities: frozenset = field(default_factory=frozenset)
    # cfg -> (epoch -> weight) of the regulariser; with capability "regularised"
    reg_schedule: Callable = None
    # config keys that choose how the network computes, not what: the weights and the
    # outputs are the same whatever their values (e.g. a CPU kernel or the graph's
    # operators). A checkpoint's network takes them from the config it is loaded
    # with, not from the training's, so a checkpoint trained on one device runs on another.
    compute_keys: frozenset = field(default_factory=frozenset)
    # config values export.py uses instead of the training ones (e.g. an exportable op
    # choice); only compute_keys, since export keeps the trained weights
    export_overrides: dict = None
    # the small run the contract tests make on generated data
    trial: Trial = None
    # the run scripts/quickstart.sh makes (a few minutes on 2 cores); default: the trial
    quick_start: Trial = None
    # the benchmark's cases (bench/run.py): training batch sizes, the large predict batch
    bench_train_batches: tuple = (256,)
    bench_predict_batch: int = 1024
    # (network, inputs of one batch, task names) -> {"lines": [...], ...}: what eval.py
    # prints and saves about the trained network itself (e.g. DSelect-k's expert usage)
    describe: Callable = None

    def __post_init__(self):
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"{self.name}: unknown capabilities {sorted(unknown)}; "
                             f"known: {sorted(CAPABILITIES)}")
        if not isinstance(self.trial, Trial):
            raise ValueError(f"{self.name}: a model needs a trial (registry.Trial): the contract "
                             "tests train it on generated data")
        loose = set(self.export_overrides or {}) - set(self.compute_keys)
        if loose:
            raise ValueError(f"{self.name}: export_overrides may only set compute_keys (export "
                             f"keeps the trained weights); not {sorted(loose)}")
        if ("regularised" in self.capabilities) != (self.reg_schedule is not None):
            raise ValueError(f"{self.name}: a 'regularised' network needs a reg_schedule "
                             "and only it has one")

    # ------------------------------------------------------------ the data set's part
    @property
    def sparse(self):
        """The network's embedding table is trained row-wise (SparseTable)."""
        return "sparse_table" in self.capabilities

    @property
    def task_type(self):
        return self.dataset.task_type

    def load_feature_map(self, data_dir):
        return self.dataset.load_feature_map(data_dir)

    def prepare_data(self, cfg):
        """Raw files to MindRecord (prepare_data.py); returns the feature map."""
        return self.dataset.convert(cfg)

    def columns(self, fmap):
        return self.dataset.columns(fmap)

    def make_batch(self, batch, fmap):
        return self.dataset.make_batch(batch, fmap)

    def task_names(self, fmap):
        return self.dataset.task_names(fmap)

    def input_signature(self, fmap):
        return self.dataset.input_signature(fmap)

    def output_dims(self, fmap):
        return self.dataset.output_dims(fmap)

    # ------------------------------------------------------------ what the engine wraps
    def build_loss(self, cfg, fmap):
        from src.engine import heads
        return heads.build_loss(self.task_type, cfg, self.task_names(fmap))

    def predictor(self, network):
        from src.engine import heads
        if self.sparse and network.embedding.sharded:
            from src.engine.sharded import ShardedPredictor
            return ShardedPredictor(network, heads.ACTIVATIONS[self.task_type]())
        return heads.predictor(network, self.task_type)

    def net_with_loss(self, network, cfg, fmap):
        from src.engine import heads
        return heads.net_with_loss(network, self.build_loss(cfg, fmap), cfg, sparse=self.sparse,
                                   reg_schedule=self.reg_schedule)

    def check_network(self, network):
        """Raise TypeError unless ``network`` has what the spec declares."""
        from src.engine.interfaces import require
        for capability in sorted(self.capabilities):
            require(network, CAPABILITIES[capability])

    def transform(self, fmap):
        """The reader's per-batch transform (evaluation, inference)."""
        return lambda batch: self.make_batch(batch, fmap)

    def train_transform(self, fmap, network, cfg=None, distributed=False):
        """The training reader's transform: for SparseTable networks the table
        ids become the batch's unique rows and their positions, padded by
        ``cfg.row_buckets`` (1 in distributed runs, whose ranks exchange
        rows in collectives that need one length on every rank); for a
        sharded table, those rows routed to the ranks that hold them."""
        if not self.sparse:
            return self.transform(fmap)
        if network.embedding.sharded:
            from src.engine.sharded import routed_transform
            return routed_transform(self.transform(fmap), network)
        return self._rows_transform(fmap, network, 1 if distributed or cfg is None
                                    else int(cfg.get("row_buckets", 1)))

    def eval_transform(self, fmap, network):
        """The transform of the splits ``network`` is evaluated on in training:
        the reader's, or for a sharded table the batch's unique rows (what
        :meth:`predictor` then takes)."""
        if not (self.sparse and network.embedding.sharded):
            return self.transform(fmap)
        return self._rows_transform(fmap, network, 1)

    def _rows_transform(self, fmap, network, buckets):
        from src.engine.sharded import table_ids
        from src.engine.sparse import rows_transform
        return rows_transform(self.transform(fmap), table_ids(network),
                              network.embedding.scratch_row, buckets)


def _discover():
    """``{name: module path}`` of the folders under src/ that hold a spec.py."""
    found = {}
    for name in sorted(os.listdir(SRC)):
        if os.path.isfile(os.path.join(SRC, name, "spec.py")):
            found[name] = f"src.{name}.spec"
    return found


_SPECS = {}


def model_names():
    """The registered models, sorted."""
    return list(_discover())


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name`` (one of :func:`model_names`)."""
    if name not in _SPECS:
        modules = _discover()
        if name not in modules:
            raise ValueError(f"model {name!r} is not available; choose one of "
                             f"{', '.join(modules)}")
        spec = getattr(importlib.import_module(modules[name]), "SPEC", None)
        if not isinstance(spec, ModelSpec) or spec.name != name:
            raise TypeError(f"{modules[name]} must define SPEC = ModelSpec(name={name!r}, ...)")
        _SPECS[name] = spec
    return _SPECS[name]


def all_specs():
    """Every registered model's spec, in name order."""
    return [get_model_spec(name) for name in model_names()]


def model_datasets():
    """``{model: data set name}``: the config loader layers the data set's
    section under the model's."""
    return {spec.name: spec.dataset.name for spec in all_specs()}


def models_on(dataset_name):
    """The models trained on the data set ``dataset_name``."""
    return [spec.name for spec in all_specs() if spec.dataset.name == dataset_name]
