"""Configuration of every entry point: a YAML file plus command-line overrides.

A config file holds up to three YAML documents separated by ``---`` (the
MindSpore model-zoo convention): (1) values, (2) a help text per key, (3) the
allowed choices per key. The values document holds common keys plus one
section per model (``mmoe:``, ``deepfm:``, ...); help and choices mirror that
nesting. The repository's ``default_config.yaml`` is the schema: it fixes
the valid keys, their types (taken from its values), help texts and choices.
Any other file (``--config_path``) only needs the keys it changes.

Precedence, lowest first: the schema's common keys, the schema's section of
the selected model, the loaded file's common keys, the loaded file's section
of the selected model, the command line. Section keys become top-level keys
of the result; a section key named like a common key overrides it.

No MindSpore import here: every tool (also data preparation) can use it.
"""
import argparse
import difflib
import os
import sys

import yaml

from src.fileio import write_text_atomic

MODEL_SECTIONS = ("mmoe", "deepfm", "dlrm", "dselect_k")
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "default_config.yaml")
_TRUE, _FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}
_METAVAR = {"int": "INT", "float": "FLOAT", "bool": "BOOL", "str": "STR",
            "optional": "STR|none", "dict": "YAML", "any": "VALUE"}


class ConfigError(ValueError):
    """A configuration problem, worded for the user."""


def _closest(name, candidates):
    match = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return match[0] if match else None


def _fmt(value, quote=True):
    """YAML-like text of a value (strings quoted unless quote=False)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if quote or value == "" else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v, quote) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v, quote)}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------- types
def _type_of(value):
    """Type of a schema value as (kind, element kind); null means optional str."""
    if value is None:
        return ("optional", None)
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("str", str), ("dict", dict)):
        if isinstance(value, cls):
            return (kind, None)
    if isinstance(value, list):
        kinds = {_type_of(v)[0] for v in value}
        if kinds == {"int", "float"}:
            return ("list", "float")
        return ("list", _type_of(value[0])[0] if value else None)
    return ("any", None)


def _type_name(t):
    kind, elem = t
    if kind == "list":
        return f"list of {_type_name((elem, None))}" if elem else "list"
    return "str or null" if kind == "optional" else kind


def _coerce(value, t):
    """Check a YAML value against type t; returns it (ints become floats where a
    float is expected) or raises TypeError."""
    kind, elem = t
    if kind == "any" or (kind == "optional" and (value is None or isinstance(value, str))):
        return value
    if kind in ("int", "float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if kind == "float" else value
    simple = {"bool": bool, "float": float, "str": str, "dict": dict}
    if kind in simple and isinstance(value, simple[kind]):
        return value
    if kind == "list" and isinstance(value, list):
        return [_coerce(v, (elem, None)) for v in value] if elem else list(value)
    raise TypeError(kind)


def _from_text(text, t, flag):
    """Convert a command-line value to type t."""
    kind, elem = t
    bad = ConfigError(f"{flag}: expected {_type_name(t)}, got {text!r}")
    s = text.strip()
    if kind == "str":
        return text
    if kind == "optional":
        return None if s.lower() in ("none", "null", "") else text
    if kind == "bool":
        if s.lower() in _TRUE | _FALSE:
            return s.lower() in _TRUE
        raise bad
    if kind in ("int", "float"):
        try:
            return int(s) if kind == "int" else float(s)
        except ValueError:
            raise bad from None
    try:
        if kind == "list":
            items = yaml.safe_load(s) if s.startswith("[") else (
                [p.strip() for p in s.split(",")] if s else [])
            if not isinstance(items, list):
                raise bad
            if elem is None:
                return [yaml.safe_load(i) if isinstance(i, str) else i for i in items]
            return [_from_text(i, (elem, None), flag) if isinstance(i, str)
                    else _coerce(i, (elem, None)) for i in items]
        value = yaml.safe_load(s)
        return _coerce(value, t) if kind == "dict" else value
    except (yaml.YAMLError, TypeError, ConfigError):
        raise bad from None


# ---------------------------------------------------------------- files
def _read_docs(path, shown):
    """The three documents (values, help, choices) of a YAML file."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{shown}' does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            docs = list(yaml.safe_load_all(fh))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{shown}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not a UTF-8 text file") from None
    if len(docs) > 3:
        raise ConfigError(f"{shown}: {len(docs)} YAML documents; expected at most 3 "
                          "(values, help texts, choices)")
    docs = [{} if d is None else d for d in docs] + [{}] * (3 - len(docs))
    for doc, what in zip(docs, ("values", "help", "choices")):
        if not isinstance(doc, dict):
            raise ConfigError(f"{shown}: the {what} document must be a mapping (key: value)")
    return docs


class _Schema:
    """Keys, types, help texts and choices, from the schema file."""

    def __init__(self, path, shown):
        values, helps, choices = _read_docs(path, shown)
        model_choices = choices.get("model")
        names = set(MODEL_SECTIONS) | set(model_choices if isinstance(model_choices, list) else [])
        self.sections = {k: dict(v or {}) for k, v in values.items()
                         if k in names and (v is None or isinstance(v, dict))}
        self.common = {k: v for k, v in values.items() if k not in self.sections}
        self.types = {k: _type_of(v) for k, v in self.common.items()}
        self.section_types = {s: {k: _type_of(v) for k, v in sec.items()}
                              for s, sec in self.sections.items()}
        self.help, self.choices = {}, {}
        self.add_docs(helps, choices, shown)

    def key_type(self, section, key):
        """Type of a key in a section (its own key or a common key), or None."""
        return self.section_types[section].get(key, self.types.get(key))

    def add_docs(self, helps, choices, shown):
        """Merge help and choices documents; nested dicts per section."""
        for doc, store, what in ((helps, self.help, "help text"),
                                 (choices, self.choices, "choices")):
            for key, val in doc.items():
                if key in self.sections and isinstance(val, dict):
                    for sub, text in val.items():
                        if self.key_type(key, sub) is None:
                            raise ConfigError(f"{shown}: {what} for unknown key '{key}.{sub}'")
                        self._check_choices(what, f"{key}.{sub}", text, shown)
                    store.setdefault(key, {}).update(val)
                elif key in self.common:
                    self._check_choices(what, key, val, shown)
                    store[key] = val
                else:
                    raise ConfigError(f"{shown}: {what} for unknown key '{key}'")

    @staticmethod
    def _check_choices(what, key, val, shown):
        if what == "choices" and not isinstance(val, list):
            raise ConfigError(f"{shown}: choices of '{key}' must be a list, got {_fmt(val)}")

    def lookup(self, store, model, key):
        """Section-specific help text or choices of key, else the common one."""
        section = store.get(model) if model in self.sections else None
        if isinstance(section, dict) and key in section:
            return section[key]
        return store.get(key)


def _checked(value, t, where):
    try:
        return _coerce(value, t)
    except TypeError:
        raise ConfigError(f"{where}: expected {_type_name(t)}, got {_fmt(value)}") from None


def _validate(schema, values, shown):
    """Keys and types of a loaded values document -> (common, {section: values})."""
    common, sections = {}, {}
    for key, value in values.items():
        if key in schema.sections:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{shown}: section '{key}' must be a mapping, got {_fmt(value)}")
            sections[key] = {}
            for sub, subval in (value or {}).items():
                t = schema.key_type(key, sub)
                if t is None:
                    guess = _closest(sub, list(schema.sections[key]) + list(schema.common))
                    hint = f" (did you mean '{key}.{guess}'?)" if guess else ""
                    raise ConfigError(f"{shown}: unknown key '{key}.{sub}'{hint}")
                sections[key][sub] = _checked(subval, t, f"{shown}: {key}.{sub}")
        elif key in schema.common:
            common[key] = _checked(value, schema.types[key], f"{shown}: {key}")
        else:
            guess = _closest(key, list(schema.common) + list(schema.sections))
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ConfigError(f"{shown}: unknown key '{key}'{hint}")
    return common, sections


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


def _print_help(schema, model, values, types, description, schema_shown, loaded):
    parser = argparse.ArgumentParser(
        description=description, formatter_class=_Formatter, add_help=False,
        usage="%(prog)s [-h] [--config_path FILE] [--model NAME] [--KEY VALUE ...]",
        epilog="Values: --key value or --key=value; booleans true/false/yes/no/1/0; lists "
               "16,8 or \"[16, 8]\"; none or null clears an optional value.\nPrecedence: "
               "schema common keys < schema model section < --config_path file (common, then "
               "model section) < command line.")
    parser.add_argument("-h", "--help", action="store_true", help="show this message and exit")
    parser.add_argument("--config_path", metavar="FILE", help=(
        f"YAML config file; keys it leaves out take the values of {schema_shown} "
        f"(loaded: {loaded})").replace("%", "%%"))
    section_keys = list(schema.sections.get(model, {}))
    groups = [("common options", [k for k in schema.common if k not in section_keys], None)]
    if section_keys:
        groups.append((f"{model} options", section_keys,
                       f"The '{model}' section; its keys override common options "
                       "of the same name."))
    for title, keys, text in groups:
        group = parser.add_argument_group(title, text)
        for key in keys:
            t = types[key]
            meta = _METAVAR.get(t[0]) or (_METAVAR.get(t[1], "VALUE") + ",..." if t[1] else "LIST")
            info = [_type_name(t), f"default: {_fmt(values.get(key), quote=False)}"]
            choices = schema.lookup(schema.choices, model, key)
            if choices:
                info.append("choices: " + ", ".join(_fmt(c, quote=False) for c in choices))
            helptext = str(schema.lookup(schema.help, model, key) or "").strip()
            line = (helptext + " " if helptext else "") + "[" + "; ".join(info) + "]"
            group.add_argument(f"--{key}", metavar=meta, help=line.replace("%", "%%"))
    parser.print_help()


def parse_config(argv=None, config_path=None, schema_path=None, description=None):
    """Build the effective :class:`Config` from the schema, the loaded file and
    ``argv`` (default ``sys.argv[1:]``). The loaded file is ``--config_path``
    from argv, else ``config_path``, else the schema itself. ``--help``
    prints usage and raises SystemExit(0); any problem raises ConfigError."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pairs, want_help = _tokenize(argv)
    cli_path = next((v for k, v in reversed(pairs) if k == "config_path"), None)
    if any(k == "config_path" for k, _ in pairs) and not cli_path:
        raise ConfigError("--config_path: expected a value")
    schema_file = os.path.abspath(schema_path or DEFAULT_SCHEMA)
    schema_shown = schema_path or os.path.basename(DEFAULT_SCHEMA)
    schema = _Schema(schema_file, schema_shown)

    path = cli_path or config_path
    if path is not None and not os.path.isfile(path):
        where = "--config_path" if cli_path else "config_path"
        raise ConfigError(f"{where}: file '{path}' does not exist")
    loaded = os.path.abspath(path) if path else schema_file
    file_common, file_sections = {}, {}
    if os.path.realpath(loaded) != os.path.realpath(schema_file):
        values_doc, helps, choices = _read_docs(loaded, path)
        file_common, file_sections = _validate(schema, values_doc, path)
        schema.add_docs(helps, choices, path)

    cli_model = next((v for k, v in reversed(pairs) if k == "model"), None)
    model = cli_model if cli_model is not None else file_common.get(
        "model", schema.common.get("model"))
    allowed = schema.choices.get("model")
    if model is not None and allowed and model not in allowed:
        raise ConfigError(f"model: {model!r} is not one of {allowed!r}")

    values, types = dict(schema.common), dict(schema.types)
    values.update(schema.sections.get(model, {}))
    types.update(schema.section_types.get(model, {}))
    values.update(file_common)
    values.update(file_sections.get(model, {}))
    if model is not None:
        values["model"] = model
    if want_help:
        _print_help(schema, model, values, types, description, schema_shown, loaded)
        raise SystemExit(0)

    for name, text in pairs:
        if name == "config_path":
            continue
        if name not in types:
            others = [s for s, sec in schema.sections.items() if name in sec and s != model]
            if others:
                where = " and ".join(f"'{s}'" for s in others)
                raise ConfigError(f"--{name} belongs to the {where} section"
                                  f"{'s' if len(others) > 1 else ''}; the selected model is "
                                  f"'{model}' (use --model {others[0]})")
            guess = _closest(name, list(types) + ["config_path"])
            raise ConfigError(f"unknown option --{name}"
                              + (f" (did you mean --{guess}?)" if guess else ""))
        if text is None:
            raise ConfigError(f"--{name}: expected a value")
        values[name] = _from_text(text, types[name], f"--{name}")

    for key, value in values.items():
        choices = schema.lookup(schema.choices, model, key) or []
        items = value if isinstance(value, list) else [value]
        for item in items if choices else []:
            if item is not None and item not in choices:
                raise ConfigError(f"{key}: {item!r} is not one of {choices!r}")
    return Config(values, loaded, schema.common, schema.sections.get(model, {}),
                  cli_keys={k for k, _ in pairs if k != "config_path"}, argv=argv)


def load_config(description=None, argv=None, config_path=None):
    """parse_config for entry points: a ConfigError prints ``error: ...`` to
    stderr and exits with status 2; ``--help`` prints usage and exits 0."""
    try:
        return parse_config(argv, config_path=config_path, description=description)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


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
