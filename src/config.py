"""Configuration of every entry point: a YAML file plus command-line overrides.

A config file holds up to three YAML documents separated by ``---`` (the
MindSpore model-zoo convention): (1) values, (2) a help text per key, (3) the
allowed choices per key. The values document holds common keys, one section
per data set (its conversion keys and what every model on it shares) and one
section per model; help and choices mirror that nesting. Which data set a
model trains on comes from the model registry (``src/<model>/spec.py``). The repository's ``default_config.yaml`` is the schema: it fixes
the valid keys, their types (taken from its values), help texts and choices.
Any other file (``--config_path``) only needs the keys it changes.

Precedence, lowest first: the schema's common keys, the schema's section of
the selected model's data set, then of the model, the loaded file's common
keys, its data set section, its model section, the command line. Section
keys become top-level keys of the result; a section key named like a common
key overrides it.

No MindSpore import here: every tool (also data preparation) can use it.
Types, file reading and the schema itself are in src/config_schema.py.
"""
import argparse
import os
import sys

import yaml

from src.config_schema import (ConfigError, Schema, closest, fmt, from_text, read_docs,
                               type_name, validate)
from src.fileio import write_text_atomic

DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "default_config.yaml")
# sizes that only make sense from 1 up: refused here, by name, before anything runs
POSITIVE_KEYS = ("epoch_size", "batch_size", "eval_batch_size", "export_batch_size")
_METAVAR = {"int": "INT", "float": "FLOAT", "bool": "BOOL", "str": "STR",
            "optional": "STR|none", "dict": "YAML", "any": "VALUE"}


# ---------------------------------------------------------------- result
class Config:
    """The effective configuration: ``cfg.key``, ``cfg.get(key, default)``,
    ``key in cfg``, ``cfg.to_dict()``; attributes may be set. ``config_path``
    is the absolute path of the loaded file."""

    def __init__(self, values, config_path, common_keys=(), section_keys=(), cli_keys=(),
                 argv=()):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_layout", (list(common_keys), list(section_keys)))
        object.__setattr__(self, "config_path", config_path)
        # the keys set on the command line, and the command line itself
        object.__setattr__(self, "cli_keys", frozenset(cli_keys))
        object.__setattr__(self, "argv", list(argv))

    def __getattr__(self, name):
        values = self.__dict__.get("_values")
        if values is None or name not in values:
            raise AttributeError(f"config has no key '{name}'")
        return values[name]

    def __setattr__(self, name, value):
        if name in ("config_path", "cli_keys", "argv") or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._values[name] = value

    def __contains__(self, key):
        return key in self._values

    def __getitem__(self, key):
        return self._values[key]

    def __repr__(self):
        return f"Config({self._values!r})"

    def get(self, key, default=None):
        return self._values.get(key, default)

    def to_dict(self):
        return dict(self._values)

    def dump(self, path):
        """Write the effective config as a YAML file that ``--config_path`` loads
        back to the same values (keys that are not config keys are left out)."""
        common_keys, section_keys = self._layout
        plain = {k: _plain(v) for k, v in self._values.items()}
        doc = {k: plain[k] for k in common_keys if k in plain}
        model = plain.get("model")
        if model and section_keys:
            doc[model] = {k: plain[k] for k in section_keys if k in plain}
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        text = (f"# Effective configuration (loaded from {self.config_path}).\n"
                + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, allow_unicode=True))
        return write_text_atomic(path, text)


def _plain(value):
    """NumPy scalars, tuples etc. as plain YAML-safe Python values."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") and callable(value.item) else value


# ---------------------------------------------------------------- command line
def _tokenize(argv):
    """``--key value`` / ``--key=value`` pairs (value None if missing) and -h."""
    pairs, want_help, i = [], False, 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok in ("-h", "--help"):
            want_help = True
            continue
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {tok!r} (options are written --key value)")
        name, eq, value = tok[2:].partition("=")
        if not eq:
            value = None
            if i < len(argv) and not argv[i].startswith("--") and argv[i] != "-h":
                value, i = argv[i], i + 1
        pairs.append((name.replace("-", "_"), value))
    return pairs, want_help


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34)


def _print_help(schema, model, values, types, description, schema_shown, loaded, shown=None):
    parser = argparse.ArgumentParser(
        description=description, formatter_class=_Formatter, add_help=False,
        usage="%(prog)s [-h] [--config_path FILE] [--model NAME] [--KEY VALUE ...]",
        epilog="Values: --key value or --key=value; booleans true/false/yes/no/1/0; lists "
               "16,8 or \"[16, 8]\"; none or null clears an optional value.\nPrecedence: "
               "schema common keys < schema data set section < schema model section < "
               "--config_path file (common, data set, then model section) < command line.")
    parser.add_argument("-h", "--help", action="store_true", help="show this message and exit")
    parser.add_argument("--config_path", metavar="FILE", help=(
        f"YAML config file; keys it leaves out take the values of {schema_shown} "
        f"(loaded: {loaded})").replace("%", "%%"))
    own = list(schema.sections.get(model, {}))
    dataset = schema.datasets.get(model)
    shared = [k for k in schema.sections.get(dataset, {}) if k not in own]
    section_keys = own + shared
    groups = [("common options", [k for k in schema.common if k not in section_keys], None)]
    if shared:
        users = ", ".join(m for m, d in schema.datasets.items() if d == dataset)
        groups.append((f"{dataset} data set options", shared,
                       f"The '{dataset}' section, shared by the models on this data set "
                       f"({users}); its keys override common options of the same name."))
    if own:
        groups.append((f"{model} options", own,
                       f"The '{model}' section; its keys override common and data set "
                       "options of the same name."))
    kinds = ["common", "dataset", "model"] if shared else ["common", "model"]
    groups = [(title, [k for k in keys if shown is None or shown(k, kind)], text)
              for (title, keys, text), kind in zip(groups, kinds)]
    if shown is not None:
        parser.epilog += ("\nListed: the options this command uses; it accepts every key of "
                          "the config (python train.py --help lists them all).")
    for title, keys, text in groups:
        if not keys:
            continue
        group = parser.add_argument_group(title, text)
        for key in keys:
            t = types[key]
            meta = _METAVAR.get(t[0]) or (_METAVAR.get(t[1], "VALUE") + ",..." if t[1] else "LIST")
            info = [type_name(t), f"default: {fmt(values.get(key), quote=False)}"]
            choices = schema.lookup(schema.choices, model, key)
            if choices:
                info.append("choices: " + ", ".join(fmt(c, quote=False) for c in choices))
            helptext = str(schema.lookup(schema.help, model, key) or "").strip()
            line = (helptext + " " if helptext else "") + "[" + "; ".join(info) + "]"
            group.add_argument(f"--{key}", metavar=meta, help=line.replace("%", "%%"))
    # help is not a log line: around time-stamped output (src/engine/cli.py) it goes out plain
    from src.engine.cli import plain_stdout
    parser.print_help(file=plain_stdout())


def parse_config(argv=None, config_path=None, schema_path=None, description=None, datasets=None,
                 shown=None):
    """Build the effective :class:`Config` from the schema, the loaded file and
    ``argv`` (default ``sys.argv[1:]``). The loaded file is ``--config_path``
    from argv, else ``config_path``, else the schema itself. ``datasets``:
    ``{model: data set}`` (default: the model registry's). ``--help``
    prints usage (the keys for which ``shown(key, kind)`` holds, kind being
    "common", "dataset" or "model"; default all) and raises SystemExit(0);
    any problem raises ConfigError."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pairs, want_help = _tokenize(argv)
    cli_path = next((v for k, v in reversed(pairs) if k == "config_path"), None)
    if any(k == "config_path" for k, _ in pairs) and not cli_path:
        raise ConfigError("--config_path: expected a value")
    schema_file = os.path.abspath(schema_path or DEFAULT_SCHEMA)
    schema_shown = schema_path or os.path.basename(DEFAULT_SCHEMA)
    if datasets is None:
        from src.registry import model_datasets   # imports no MindSpore
        datasets = model_datasets()
    schema = Schema(schema_file, schema_shown, datasets)
    if datasets and "model" in schema.common:
        schema.choices.setdefault("model", sorted(datasets))

    path = cli_path or config_path
    if path is not None and not os.path.isfile(path):
        where = "--config_path" if cli_path else "config_path"
        raise ConfigError(f"{where}: file '{path}' does not exist")
    loaded = os.path.abspath(path) if path else schema_file
    file_common, file_sections = {}, {}
    if os.path.realpath(loaded) != os.path.realpath(schema_file):
        values_doc, helps, choices = read_docs(loaded, path)
        file_common, file_sections = validate(schema, values_doc, path)
        schema.add_docs(helps, choices, path)

    cli_model = next((v for k, v in reversed(pairs) if k == "model"), None)
    model = cli_model if cli_model is not None else file_common.get(
        "model", schema.common.get("model"))
    allowed = schema.choices.get("model") or sorted(schema.datasets)
    if model is not None and allowed and model not in allowed:
        raise ConfigError(f"model: {model!r} is not one of {allowed!r}")

    chain = schema.chain(model) if model in schema.sections else []
    values, types = dict(schema.common), dict(schema.types)
    for name in reversed(chain):
        values.update(schema.sections[name])
        types.update(schema.section_types[name])
    values.update(file_common)
    for name in reversed(chain):
        values.update(file_sections.get(name, {}))
    if model is not None:
        values["model"] = model
    if want_help:
        _print_help(schema, model, values, types, description, schema_shown, loaded, shown)
        raise SystemExit(0)

    for name, text in pairs:
        if name == "config_path":
            continue
        if name not in types:
            others = [s for s, sec in schema.sections.items()
                      if name in sec and s not in chain and s in schema.datasets]
            others += [m for m, d in schema.datasets.items()
                       if d not in chain and name in schema.sections.get(d, {}) and m not in others]
            if others:
                where = " and ".join(f"'{s}'" for s in others)
                raise ConfigError(f"--{name} belongs to the {where} section"
                                  f"{'s' if len(others) > 1 else ''}; the selected model is "
                                  f"'{model}' (use --model {others[0]})")
            guess = closest(name, list(types) + ["config_path"])
            raise ConfigError(f"unknown option --{name}"
                              + (f" (did you mean --{guess}?)" if guess else ""))
        if text is None:
            raise ConfigError(f"--{name}: expected a value")
        values[name] = from_text(text, types[name], f"--{name}")

    for key in POSITIVE_KEYS:
        if key in values and values[key] is not None and values[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {values[key]}")
    for key, value in values.items():
        choices = schema.lookup(schema.choices, model, key) or []
        items = value if isinstance(value, list) else [value]
        for item in items if choices else []:
            if item is not None and item not in choices:
                raise ConfigError(f"{key}: {item!r} is not one of {choices!r}")
    section_keys = list(dict.fromkeys(k for n in reversed(chain) for k in schema.sections[n]))
    return Config(values, loaded, schema.common, section_keys,
                  cli_keys={k for k, _ in pairs if k != "config_path"}, argv=argv)


def load_config(description=None, argv=None, config_path=None, shown=None):
    """parse_config for entry points: a ConfigError prints ``error: ...`` to
    stderr and exits with status 2; ``--help`` prints usage (the keys
    ``shown`` selects, see :func:`parse_config`) and exits 0."""
    try:
        return parse_config(argv, config_path=config_path, description=description, shown=shown)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


# keys of where and how a process runs, which every MindSpore entry point uses
RUNTIME_KEYS = ("model", "device_target", "device_id", "mode", "seed", "deterministic",
                "cpu_threads", "amp_level")


def help_for(common=(), sections=True):
    """A ``shown`` selection for an entry point's --help: the runtime keys,
    ``common`` and (``sections``) the data set's and the model's sections."""
    wanted = set(RUNTIME_KEYS) | set(common)
    return lambda key, kind: key in wanted or (sections and kind != "common")


def config_for_model(cfg, model):
    """``cfg``'s command line and config file resolved for another ``model``
    (e.g. the one a checkpoint was trained as)."""
    return parse_config(list(cfg.argv) + ["--model", model], config_path=cfg.config_path)


def require_path(cfg, key, kind="dir"):
    """Check that cfg.<key> names an existing directory (kind="dir") or file
    (kind="file"); returns the path, raises ConfigError otherwise."""
    value = cfg.get(key)
    if value is None or str(value).strip() == "":
        raise ConfigError(f"{key} is required (set --{key})")
    exists = os.path.isdir(value) if kind == "dir" else os.path.isfile(value)
    if not exists:
        what = "directory" if kind == "dir" else "file"
        if os.path.exists(value):
            raise ConfigError(f"{key}: '{value}' is not a {what}")
        raise ConfigError(f"{key}: {what} '{value}' does not exist")
    return value

