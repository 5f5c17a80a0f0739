"""The plug-in layout holds: a model is named only in its own files and the
config files, the engine depends on no model and no registry, the model list
exists once (the folders with a spec.py), and no source file grows past
about 400 lines."""
import os
import re
import subprocess

import pytest
import yaml

from src.config import parse_config
from src.registry import SRC, ModelSpec, get_model_spec, model_names

ROOT = os.path.dirname(SRC)
SKIP_DIRS = {".git", ".venv", ".cache", "__pycache__", "node_modules", "out", "build", "rank_0",
             "quickstart", "data"}
# config files and documentation may name the models; so may generated results
FREE = (".yaml", ".yml", ".md", ".json", ".pyc", ".ckpt", ".mindir", ".onnx", ".bin", ".gz")
MAX_LINES = 420


def _source_files():
    """The repository's files (git's view when there is one: tracked and new,
    not ignored), less the ones free to name models."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        listed = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith((".", "rank_"))]
            listed += [os.path.relpath(os.path.join(folder, n), ROOT) for n in files]
    return [p for p in listed if not p.endswith(FREE) and os.path.isfile(os.path.join(ROOT, p))]


def _owner(path):
    """The model a file belongs to: under src/<model>/, or named for it
    (tests/test_<model>_*.py, bench/peer/<model>.py); else None."""
    parts = path.split(os.sep)
    names = model_names()
    if parts[0] == "src" and len(parts) > 2 and parts[1] in names:
        return parts[1]
    stem = os.path.splitext(parts[-1])[0]
    for name in names:
        if stem == name or stem.startswith(f"test_{name}_") or stem == f"test_{name}":
            return name
    return None


def test_model_names_appear_only_in_their_own_files():
    names = model_names()
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    found = []
    for path in _source_files():
        try:
            with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except UnicodeDecodeError:
            continue
        owner = _owner(path)
        for number, line in enumerate(lines, 1):
            for match in pattern.finditer(line):
                if match.group(1) != owner:
                    found.append(f"{path}:{number}: {line.strip()}")
    assert not found, ("model names outside their own folders (use the registry):\n"
                       + "\n".join(found))


def test_the_engine_depends_on_no_model_and_no_registry():
    engine = os.path.join(SRC, "engine")
    banned = re.compile(r"^\s*(from|import)\s+src\.(registry|pipeline|"
                        + "|".join(model_names()) + r")\b", re.M)
    for name in sorted(os.listdir(engine)):
        if name.endswith(".py"):
            with open(os.path.join(engine, name), encoding="utf-8") as fh:
                assert not banned.search(fh.read()), f"src/engine/{name} imports above the engine"


def test_every_model_folder_is_registered_with_its_config_sections():
    with open(os.path.join(ROOT, "default_config.yaml"), encoding="utf-8") as fh:
        values, helps, choices = yaml.safe_load_all(fh)
    assert "model" not in choices, "the model list is the registry's, not the config's"
    assert values["model"] in model_names()
    for name in model_names():
        spec = get_model_spec(name)
        assert isinstance(values.get(name), dict), f"default_config.yaml has no '{name}' section"
        assert isinstance(values.get(spec.dataset.name), dict), spec.dataset.name
        cfg = parse_config(["--model", name])
        assert cfg.model == name and os.path.basename(cfg.data_path)


def test_compute_keys_are_the_models_config_keys():
    """What a checkpoint's build takes from the loading config (compute_keys)
    are keys of the model's config, and export may change only those."""
    for name in model_names():
        spec = get_model_spec(name)
        assert set(spec.compute_keys) <= set(parse_config(["--model", name]).to_dict()), name
        assert set(spec.export_overrides or {}) <= set(spec.compute_keys), name
    spec = get_model_spec(model_names()[0])
    with pytest.raises(ValueError, match=r"export_overrides may only set compute_keys .*'units'"):
        ModelSpec(name="toy", dataset=spec.dataset, build_network=spec.build_network,
                  trial=spec.trial, compute_keys=frozenset({"impl"}),
                  export_overrides={"impl": "graph", "units": 8})


def test_a_folder_with_a_spec_is_a_model(tmp_path, monkeypatch):
    """Discovery is by folder: a spec.py makes a model, a bad one is named."""
    import src.registry as registry
    fake = tmp_path / "src"
    (fake / "toy").mkdir(parents=True)
    (fake / "toy" / "spec.py").write_text("SPEC = None\n")
    (fake / "layers").mkdir()
    monkeypatch.setattr(registry, "SRC", str(fake))
    assert registry.model_names() == ["toy"]
    with pytest.raises(ValueError, match="model 'nope' is not available; choose one of toy"):
        registry.get_model_spec("nope")


def test_source_files_stay_small():
    big = []
    for path in _source_files():
        if path.endswith(".py") and path.split(os.sep)[0] in ("src", "bench"):
            with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
                lines = sum(1 for _ in fh)
            if lines > MAX_LINES:
                big.append(f"{path}: {lines} lines")
    assert not big, big
