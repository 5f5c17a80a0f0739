"""The models that tests of the engine, the entry points and the tools run,
chosen by the role they play (the data set they train on, the interfaces
they declare) from the registry: only a model's own tests name it."""
from src.registry import all_specs, models_on


def on(dataset):
    """The first registered model trained on the data set ``dataset``."""
    names = models_on(dataset)
    assert names, f"no registered model trains on {dataset}"
    return names[0]


def sparse_on(dataset):
    """The first registered model on ``dataset`` whose network is a SparseTable."""
    names = [s.name for s in all_specs() if s.sparse and s.dataset.name == dataset]
    assert names, f"no registered SparseTable model trains on {dataset}"
    return names[0]


def default_model(dataset):
    """The model the entry points run without --model (default_config.yaml's),
    checked to train on ``dataset``: the data the calling test generates."""
    from src.config import parse_config
    from src.registry import get_model_spec
    name = parse_config([]).model
    assert get_model_spec(name).dataset.name == dataset, (name, dataset)
    return name


def sparse_criteo(directory, rows, seed, config_path):
    """The first SparseTable model on Criteo and its data: ``rows`` generated
    raw lines converted into ``directory/mr`` (random split, blocks of 500
    rows). Returns the model's spec."""
    import prepare_data
    from src.registry import get_model_spec
    from src.synth import criteo as criteo_synth
    spec = get_model_spec(sparse_on("criteo"))
    criteo_synth.main(["--output_dir", str(directory / "raw"), "--rows", str(rows), "--seed", str(seed)])
    prepare_data.main(["--config_path", config_path, "--model", spec.name, "--raw_data_path",
                       str(directory / "raw"), "--data_path", str(directory / "mr"), "--split",
                       "random", "--block_rows", "500"])
    return spec
