"""Tests of src/config.py with small schema and config files of their own."""
import os
import textwrap

import pytest
import yaml

from src.config import Config, ConfigError, load_config, parse_config, require_path

SCHEMA = """\
model: alpha
device_target: Ascend
batch_size: 32
learning_rate: 0.001
warmup_epochs: 5.0
resume: false
data_path: ./data/census/mindrecord
ckpt_file: null
loss_scale_mode: dynamic
metrics: [auc]
alpha:
  num_experts: 8
  tower_units: [8]
  task_weights: [1.0, 1.0]
  learning_rate: 0.0001
beta:
  emb_dim: 80
  mlp_units: [400, 400]
  data_path: ./data/criteo/mindrecord
---
model: "Model to run"
device_target: "Device to run on"
batch_size: "Samples per step"
learning_rate: "Base learning rate"
warmup_epochs: "Warm-up epochs"
resume: "Resume training"
data_path: "Folder with the data"
ckpt_file: "Checkpoint to evaluate"
loss_scale_mode: "Loss scaling (100% float32 when none)"
metrics: "Metrics to report"
alpha:
  num_experts: "Number of experts"
  tower_units: "Hidden units of each tower"
  task_weights: "Loss weight of each task"
  learning_rate: "Alpha learning rate"
beta:
  emb_dim: "Embedding size"
  mlp_units: "Hidden units of the MLP"
---
model: [alpha, beta]
device_target: [Ascend, GPU, CPU]
loss_scale_mode: [none, static, dynamic]
metrics: [auc, logloss]
"""


def _write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


@pytest.fixture
def schema(tmp_path):
    return _write(tmp_path / "schema.yaml", SCHEMA)


# the toy schema's models and their data sets (the registry's in real use)
DATASETS = {"alpha": "tabular", "beta": "clicks"}


def parse(schema, *argv, config_path=None, datasets=DATASETS):
    return parse_config(list(argv), config_path=config_path, schema_path=schema,
                        datasets=datasets)


def error_of(schema, *argv, config_path=None, datasets=DATASETS):
    with pytest.raises(ConfigError) as info:
        parse(schema, *argv, config_path=config_path, datasets=datasets)
    return str(info.value)


# ---------------------------------------------------------------- values and merging
def test_schema_alone_gives_common_plus_section(schema):
    cfg = parse(schema)
    assert isinstance(cfg, Config)
    assert cfg.model == "alpha"
    assert cfg.batch_size == 32
    assert cfg.num_experts == 8 and cfg.tower_units == [8]
    assert cfg.learning_rate == 0.0001          # the section overrides the common key
    assert cfg.ckpt_file is None
    assert "emb_dim" not in cfg                 # another model's section
    assert cfg.config_path == os.path.abspath(schema)


def test_cli_overrides_with_type_conversion(schema):
    cfg = parse(schema, "--batch_size", "64", "--learning_rate", "1", "--warmup_epochs=2",
                "--num_experts", "4", "--tower_units", "16,8", "--task_weights", "[2, 0.5]",
                "--ckpt_file", "model.ckpt", "--device_target", "CPU")
    assert cfg.batch_size == 64 and isinstance(cfg.batch_size, int)
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.warmup_epochs == 2.0 and isinstance(cfg.warmup_epochs, float)
    assert cfg.num_experts == 4
    assert cfg.tower_units == [16, 8]
    assert cfg.task_weights == [2.0, 0.5] and all(isinstance(w, float) for w in cfg.task_weights)
    assert cfg.ckpt_file == "model.ckpt"
    assert cfg.device_target == "CPU"


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("YES", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("No", False)])
def test_bool_forms(schema, text, expected):
    assert parse(schema, "--resume", text).resume is expected


@pytest.mark.parametrize("text,expected", [
    ("16,8", [16, 8]), ("16, 8", [16, 8]), ("[16, 8]", [16, 8]), ("[16,8]", [16, 8]),
    ("4", [4]), ("[]", []), ("", [])])
def test_list_forms(schema, text, expected):
    assert parse(schema, "--tower_units", text).tower_units == expected


def test_list_of_str_and_null(schema):
    cfg = parse(schema, "--metrics", "auc,logloss", "--ckpt_file", "none")
    assert cfg.metrics == ["auc", "logloss"]
    assert cfg.ckpt_file is None
    assert parse(schema, "--ckpt_file", "null").ckpt_file is None
    assert parse(schema, "--ckpt_file", "NULL").ckpt_file is None
    # a plain str key keeps "none" as a string (it is a valid choice here)
    assert parse(schema, "--loss_scale_mode", "none").loss_scale_mode == "none"


def test_negative_numbers_and_last_flag_wins(schema):
    cfg = parse(schema, "--learning_rate", "-0.5", "--batch_size", "1", "--batch_size", "2")
    assert cfg.learning_rate == -0.5 and cfg.batch_size == 2


def test_partial_file_is_filled_from_schema(schema, tmp_path):
    cfg_file = _write(tmp_path / "cpu.yaml", """\
        device_target: CPU
        alpha:
          num_experts: 2
        """)
    cfg = parse(schema, "--config_path", cfg_file)
    assert cfg.device_target == "CPU" and cfg.num_experts == 2
    assert cfg.batch_size == 32 and cfg.tower_units == [8] and cfg.learning_rate == 0.0001
    assert cfg.config_path == os.path.abspath(cfg_file)


def test_merge_order_file_section_cli(schema, tmp_path):
    cfg_file = _write(tmp_path / "c.yaml", """\
        batch_size: 16
        learning_rate: 0.5
        warmup_epochs: 3
        alpha:
          batch_size: 8
          num_experts: 3
        """)
    cfg = parse(schema, config_path=cfg_file)
    assert cfg.batch_size == 8                  # file section beats file common
    assert cfg.learning_rate == 0.5             # the file's value beats the schema's section
    assert cfg.warmup_epochs == 3.0 and isinstance(cfg.warmup_epochs, float)
    cfg = parse(schema, "--batch_size", "4", config_path=cfg_file)
    assert cfg.batch_size == 4                  # command line beats everything
    assert cfg.num_experts == 3


def test_cli_config_path_beats_argument(schema, tmp_path):
    a = _write(tmp_path / "a.yaml", "batch_size: 1\n")
    b = _write(tmp_path / "b.yaml", "batch_size: 2\n")
    assert parse(schema, "--config_path", b, config_path=a).batch_size == 2
    assert parse(schema, f"--config_path={b}").batch_size == 2


def test_model_switch_selects_section(schema, tmp_path):
    cfg = parse(schema, "--model", "beta", "--emb_dim", "16", "--mlp_units", "32,16")
    assert cfg.model == "beta"
    assert cfg.emb_dim == 16 and cfg.mlp_units == [32, 16]
    assert cfg.learning_rate == 0.001           # alpha's override does not apply
    assert cfg.data_path == "./data/criteo/mindrecord"
    assert "num_experts" not in cfg
    cfg_file = _write(tmp_path / "d.yaml", "model: beta\nbeta:\n  emb_dim: 8\n")
    assert parse(schema, config_path=cfg_file).emb_dim == 8


def test_file_help_and_choices_documents_are_used(schema, tmp_path):
    cfg_file = _write(tmp_path / "c.yaml", """\
        device_target: CPU
        ---
        batch_size: "Per-device batch"
        ---
        device_target: [CPU]
        """)
    assert parse(schema, config_path=cfg_file).device_target == "CPU"
    assert "is not one of ['CPU']" in error_of(schema, "--device_target", "GPU",
                                               config_path=cfg_file)


# ---------------------------------------------------------------- errors
def test_unknown_key_in_file(schema, tmp_path):
    cfg_file = _write(tmp_path / "default_config_cpu.yaml", "batchsize: 4\n")
    msg = error_of(schema, "--config_path", cfg_file)
    assert msg == f"{cfg_file}: unknown key 'batchsize' (did you mean 'batch_size'?)"


def test_unknown_key_in_file_section(schema, tmp_path):
    cfg_file = _write(tmp_path / "c.yaml", "alpha:\n  num_expert: 4\n")
    msg = error_of(schema, config_path=cfg_file)
    assert msg == f"{cfg_file}: unknown key 'alpha.num_expert' (did you mean 'alpha.num_experts'?)"


def test_unknown_section_in_file(schema, tmp_path):
    cfg_file = _write(tmp_path / "c.yaml", "omega:\n  bottom_units: [4]\n")
    assert "unknown key 'omega'" in error_of(schema, config_path=cfg_file)


def test_wrong_type_in_file(schema, tmp_path):
    cfg_file = _write(tmp_path / "c.yaml", "batch_size: abc\n")
    assert error_of(schema, config_path=cfg_file) == \
        f"{cfg_file}: batch_size: expected int, got 'abc'"
    cfg_file = _write(tmp_path / "c.yaml", "resume: 1\n")
    assert error_of(schema, config_path=cfg_file) == f"{cfg_file}: resume: expected bool, got 1"
    cfg_file = _write(tmp_path / "c.yaml", "batch_size: true\n")
    assert "batch_size: expected int, got true" in error_of(schema, config_path=cfg_file)
    cfg_file = _write(tmp_path / "c.yaml", "alpha:\n  tower_units: [8, x]\n")
    assert error_of(schema, config_path=cfg_file) == \
        f"{cfg_file}: alpha.tower_units: expected list of int, got [8, 'x']"
    cfg_file = _write(tmp_path / "c.yaml", "ckpt_file: 3\n")
    assert "ckpt_file: expected str or null, got 3" in error_of(schema, config_path=cfg_file)


def test_wrong_type_on_cli(schema):
    assert error_of(schema, "--batch_size", "abc") == "--batch_size: expected int, got 'abc'"
    assert error_of(schema, "--batch_size", "1.5") == "--batch_size: expected int, got '1.5'"
    assert error_of(schema, "--learning_rate", "fast") == \
        "--learning_rate: expected float, got 'fast'"
    assert error_of(schema, "--resume", "maybe") == "--resume: expected bool, got 'maybe'"
    assert error_of(schema, "--tower_units", "16,x") == \
        "--tower_units: expected list of int, got '16,x'"
    assert error_of(schema, "--batch_size", "none") == "--batch_size: expected int, got 'none'"


def test_unknown_option_on_cli(schema):
    assert error_of(schema, "--batchsize", "4") == \
        "unknown option --batchsize (did you mean --batch_size?)"
    assert error_of(schema, "--num_expert", "4") == \
        "unknown option --num_expert (did you mean --num_experts?)"
    assert error_of(schema, "--zzz", "4") == "unknown option --zzz"


def test_flag_of_another_section(schema):
    assert error_of(schema, "--emb_dim", "16") == (
        "--emb_dim belongs to the 'beta' section; the selected model is 'alpha' "
        "(use --model beta)")


def test_missing_value_and_stray_argument(schema):
    assert error_of(schema, "--batch_size") == "--batch_size: expected a value"
    assert "unexpected argument 'x'" in error_of(schema, "x")


def test_value_outside_choices(schema, tmp_path):
    assert error_of(schema, "--device_target", "TPU") == \
        "device_target: 'TPU' is not one of ['Ascend', 'GPU', 'CPU']"
    assert error_of(schema, "--metrics", "auc,gauc") == \
        "metrics: 'gauc' is not one of ['auc', 'logloss']"
    cfg_file = _write(tmp_path / "c.yaml", "device_target: TPU\n")
    assert "device_target: 'TPU' is not one of" in error_of(schema, config_path=cfg_file)
    assert error_of(schema, "--model", "omega") == "model: 'omega' is not one of ['alpha', 'beta']"


def test_sizes_below_one_are_refused_by_name(schema, tmp_path):
    assert error_of(schema, "--batch_size", "0") == "batch_size must be a positive integer, got 0"
    cfg_file = _write(tmp_path / "c.yaml", "batch_size: -4\n")
    assert error_of(schema, config_path=cfg_file) == "batch_size must be a positive integer, got -4"
    assert parse(schema, "--batch_size", "1").batch_size == 1


def test_missing_config_file(schema, tmp_path):
    missing = str(tmp_path / "nope.yaml")
    assert error_of(schema, "--config_path", missing) == \
        f"--config_path: file '{missing}' does not exist"
    assert "does not exist" in error_of(schema, config_path=missing)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config([], schema_path=str(tmp_path / "no_schema.yaml"))


def test_yaml_syntax_error_names_file_and_line(schema, tmp_path):
    cfg_file = _write(tmp_path / "bad.yaml", "batch_size: 4\nalpha: [1, 2\nresume: true\n")
    msg = error_of(schema, "--config_path", cfg_file)
    assert msg.startswith(f"{cfg_file}: invalid YAML at line ")
    cfg_file = _write(tmp_path / "bad2.yaml", "batch_size: 4\n  resume: true\n")
    assert "line 2" in error_of(schema, "--config_path", cfg_file)


def test_non_mapping_document(schema, tmp_path):
    cfg_file = _write(tmp_path / "list.yaml", "- 1\n- 2\n")
    assert "must be a mapping" in error_of(schema, config_path=cfg_file)


# ---------------------------------------------------------------- require_path
def test_require_path(schema, tmp_path):
    cfg = parse(schema, "--data_path", str(tmp_path))
    assert require_path(cfg, "data_path") == str(tmp_path)
    cfg.ckpt_file = None
    with pytest.raises(ConfigError) as info:
        require_path(cfg, "ckpt_file", kind="file")
    assert str(info.value) == "ckpt_file is required (set --ckpt_file)"
    cfg.data_path = "./nope"
    with pytest.raises(ConfigError) as info:
        require_path(cfg, "data_path", kind="dir")
    assert str(info.value) == "data_path: directory './nope' does not exist"
    cfg.ckpt_file = str(tmp_path / "x.ckpt")
    with pytest.raises(ConfigError) as info:
        require_path(cfg, "ckpt_file", kind="file")
    assert str(info.value) == f"ckpt_file: file '{tmp_path / 'x.ckpt'}' does not exist"
    (tmp_path / "x.ckpt").write_bytes(b"")
    assert require_path(cfg, "ckpt_file", kind="file") == str(tmp_path / "x.ckpt")


# ---------------------------------------------------------------- help and load_config
def test_help_lists_every_key(schema, tmp_path, capsys):
    cfg_file = _write(tmp_path / "c.yaml", "batch_size: 77\n")
    with pytest.raises(SystemExit) as info:
        parse_config(["--config_path", cfg_file, "--help"], schema_path=schema, datasets=DATASETS,
                     description="Train the model.")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Train the model." in out and "--config_path" in out
    assert "common options" in out and "alpha options" in out
    flat = " ".join(out.split())
    for key, text in [("model", "Model to run"), ("device_target", "Device to run on"),
                      ("batch_size", "Samples per step"), ("resume", "Resume training"),
                      ("data_path", "Folder with the data"), ("ckpt_file", "Checkpoint"),
                      ("metrics", "Metrics to report"), ("warmup_epochs", "Warm-up epochs"),
                      ("num_experts", "Number of experts"), ("tower_units", "Hidden units"),
                      ("task_weights", "Loss weight"), ("learning_rate", "Alpha learning rate"),
                      ("loss_scale_mode", "100% float32")]:
        assert f"--{key}" in out and text in flat
    assert "default: 77" in flat                 # the loaded file's value
    assert "default: 0.0001" in flat            # the section's value
    assert "choices: Ascend, GPU, CPU" in flat
    assert "--emb_dim" not in out


def test_help_of_another_model(schema, capsys):
    with pytest.raises(SystemExit) as info:
        parse(schema, "--model", "beta", "-h")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "beta options" in out and "--emb_dim" in out and "Embedding size" in out
    assert "--num_experts" not in out


def test_load_config_exits_2_on_error(schema, capsys, monkeypatch):
    import src.config as config
    monkeypatch.setattr(config, "DEFAULT_SCHEMA", schema)
    with pytest.raises(SystemExit) as info:
        load_config(argv=["--batch_size", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --batch_size: expected int, got 'abc'"
    with pytest.raises(SystemExit) as info:
        load_config(description="x", argv=["--help"])
    assert info.value.code == 0
    assert load_config(argv=["--batch_size", "5"]).batch_size == 5


# ---------------------------------------------------------------- Config object
def test_config_object_access(schema):
    cfg = parse(schema)
    assert cfg.get("batch_size") == 32 and cfg.get("nope", 7) == 7
    assert cfg["batch_size"] == 32
    cfg.batch_size = 5
    cfg.extra = "x"
    assert cfg.batch_size == 5 and cfg.to_dict()["batch_size"] == 5 and "extra" in cfg
    assert getattr(cfg, "missing", None) is None
    with pytest.raises(AttributeError):
        _ = cfg.missing
    d = cfg.to_dict()
    d["batch_size"] = 9
    assert cfg.batch_size == 5                  # to_dict returns a copy


def test_dump_round_trip(schema, tmp_path):
    cfg_file = _write(tmp_path / "c.yaml", "batch_size: 16\nalpha:\n  tower_units: [4, 2]\n")
    cfg = parse(schema, "--learning_rate", "0.3", "--ckpt_file", "a.ckpt", "--resume", "yes",
                config_path=cfg_file)
    cfg.extra_runtime_value = 1                 # not a config key: left out of the dump
    out = cfg.dump(str(tmp_path / "run" / "config.yaml"))
    again = parse(schema, "--config_path", out)
    expected = cfg.to_dict()
    del expected["extra_runtime_value"]
    assert again.to_dict() == expected
    doc = yaml.safe_load(open(out, encoding="utf-8"))
    assert doc["alpha"]["tower_units"] == [4, 2] and "emb_dim" not in str(doc)

    cfg = parse(schema, "--model", "beta", "--emb_dim", "4")
    again = parse(schema, "--config_path", cfg.dump(str(tmp_path / "d.yaml")))
    assert again.to_dict() == cfg.to_dict()


# ---------------------------------------------------------------- data set sections
LAYERED = """\
model: left
batch_size: 32
min_count: 0
data_path: ./data
left:
  emb_dim: 8
right:
  emb_dim: 16
  batch_size: 64
  data_path: ./data/right
clicks:
  min_count: 5
  split: time
  data_path: ./data/clicks
---
clicks:
  split: "How lines are split"
---
clicks:
  split: [time, random]
"""
LAYERS = {"left": "clicks", "right": "clicks"}


def test_a_data_set_section_is_shared_by_its_models(tmp_path):
    schema = _write(tmp_path / "schema.yaml", LAYERED)
    left = parse(schema, datasets=LAYERS)
    assert (left.min_count, left.split, left.data_path, left.emb_dim) == (5, "time",
                                                                         "./data/clicks", 8)
    right = parse(schema, "--model", "right", datasets=LAYERS)
    assert (right.min_count, right.data_path, right.batch_size) == (5, "./data/right", 64)
    # a file's data set section overrides the schema's model section, its model section that
    cfg_file = _write(tmp_path / "c.yaml", "clicks:\n  min_count: 7\n  split: random\n"
                                           "right:\n  min_count: 9\n")
    assert parse(schema, "--config_path", cfg_file, datasets=LAYERS).min_count == 7
    assert parse(schema, "--model", "right", "--config_path", cfg_file,
                 datasets=LAYERS).min_count == 9
    assert "split: 'sideways' is not one of ['time', 'random']" in error_of(
        schema, "--split", "sideways", datasets=LAYERS)
    # the model choices come from the data set mapping when the schema lists none
    assert "model: 'middle' is not one of ['left', 'right']" in error_of(
        schema, "--model", "middle", datasets=LAYERS)
    # the dump puts the data set's keys into the model's section and loads back the same
    again = parse(schema, "--config_path", right.dump(str(tmp_path / "d.yaml")), datasets=LAYERS)
    assert again.to_dict() == right.to_dict()


def test_help_shows_the_data_set_options(tmp_path, capsys):
    schema = _write(tmp_path / "schema.yaml", LAYERED)
    with pytest.raises(SystemExit):
        parse(schema, "--model", "right", "--help", datasets=LAYERS)
    out = capsys.readouterr().out
    assert "clicks data set options" in out and "shared by the models on this data set" in out
    assert "(left, right)" in out and "How lines are split" in out


def test_a_key_of_another_data_set_names_its_models(tmp_path):
    datasets = {"left": "clicks", "right": "images"}
    text = LAYERED.replace("right:\n  emb_dim: 16", "images:\n  pixels: 9\nright:\n  emb_dim: 16")
    schema = _write(tmp_path / "schema2.yaml", text)
    assert error_of(schema, "--pixels", "3", datasets=datasets) == (
        "--pixels belongs to the 'right' section; the selected model is 'left' (use --model right)")
