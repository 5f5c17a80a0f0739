"""The schema side of the config loader (src/config.py): value types and
their coercion, reading the three YAML documents of a file, the schema's
common keys and sections (data sets and models) with their help texts and
choices, and checking a loaded file against them. No MindSpore import."""
import difflib
import os

import yaml

_TRUE, _FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}


class ConfigError(ValueError):
    """A configuration problem, worded for the user."""


def closest(name, candidates):
    match = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return match[0] if match else None


def fmt(value, quote=True):
    """YAML-like text of a value (strings quoted unless quote=False)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if quote or value == "" else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, quote) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v, quote)}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------- types
def type_of(value):
    """Type of a schema value as (kind, element kind); null means optional str."""
    if value is None:
        return ("optional", None)
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("str", str), ("dict", dict)):
        if isinstance(value, cls):
            return (kind, None)
    if isinstance(value, list):
        kinds = {type_of(v)[0] for v in value}
        if kinds == {"int", "float"}:
            return ("list", "float")
        return ("list", type_of(value[0])[0] if value else None)
    return ("any", None)


def type_name(t):
    kind, elem = t
    if kind == "list":
        return f"list of {type_name((elem, None))}" if elem else "list"
    return "str or null" if kind == "optional" else kind


def coerce(value, t):
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
        return [coerce(v, (elem, None)) for v in value] if elem else list(value)
    raise TypeError(kind)


def from_text(text, t, flag):
    """Convert a command-line value to type t."""
    kind, elem = t
    bad = ConfigError(f"{flag}: expected {type_name(t)}, got {text!r}")
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
            return [from_text(i, (elem, None), flag) if isinstance(i, str)
                    else coerce(i, (elem, None)) for i in items]
        value = yaml.safe_load(s)
        return coerce(value, t) if kind == "dict" else value
    except (yaml.YAMLError, TypeError, ConfigError):
        raise bad from None


# ---------------------------------------------------------------- files
def read_docs(path, shown):
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


class Schema:
    """Keys, types, help texts and choices, from the schema file.
    ``datasets``: ``{model: data set}``; both name sections."""

    def __init__(self, path, shown, datasets):
        values, helps, choices = read_docs(path, shown)
        model_choices = choices.get("model")
        self.datasets = dict(datasets)
        names = (set(self.datasets) | set(self.datasets.values())
                 | set(model_choices if isinstance(model_choices, list) else []))
        self.sections = {k: dict(v or {}) for k, v in values.items()
                         if k in names and (v is None or isinstance(v, dict))}
        self.common = {k: v for k, v in values.items() if k not in self.sections}
        self.types = {k: type_of(v) for k, v in self.common.items()}
        self.section_types = {s: {k: type_of(v) for k, v in sec.items()}
                              for s, sec in self.sections.items()}
        self.help, self.choices = {}, {}
        self.add_docs(helps, choices, shown)

    def chain(self, section):
        """The sections whose keys ``section`` may set, most specific first:
        a model's own, then its data set's."""
        parent = self.datasets.get(section)
        return [section] + ([parent] if parent in self.sections and parent != section else [])

    def key_type(self, section, key):
        """Type of a key in a section (its own, its data set's or a common key), or None."""
        for name in self.chain(section):
            if key in self.section_types.get(name, {}):
                return self.section_types[name][key]
        return self.types.get(key)

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
            raise ConfigError(f"{shown}: choices of '{key}' must be a list, got {fmt(val)}")

    def lookup(self, store, model, key):
        """Help text or choices of key: the model's, its data set's, else the common one."""
        for name in self.chain(model) if model in self.sections else []:
            section = store.get(name)
            if isinstance(section, dict) and key in section:
                return section[key]
        return store.get(key)


def checked(value, t, where):
    try:
        return coerce(value, t)
    except TypeError:
        raise ConfigError(f"{where}: expected {type_name(t)}, got {fmt(value)}") from None


def validate(schema, values, shown):
    """Keys and types of a loaded values document -> (common, {section: values})."""
    common, sections = {}, {}
    for key, value in values.items():
        if key in schema.sections:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{shown}: section '{key}' must be a mapping, got {fmt(value)}")
            sections[key] = {}
            for sub, subval in (value or {}).items():
                t = schema.key_type(key, sub)
                if t is None:
                    known = [k for n in schema.chain(key) for k in schema.sections[n]]
                    guess = closest(sub, known + list(schema.common))
                    hint = f" (did you mean '{key}.{guess}'?)" if guess else ""
                    raise ConfigError(f"{shown}: unknown key '{key}.{sub}'{hint}")
                sections[key][sub] = checked(subval, t, f"{shown}: {key}.{sub}")
        elif key in schema.common:
            common[key] = checked(value, schema.types[key], f"{shown}: {key}")
        else:
            guess = closest(key, list(schema.common) + list(schema.sections))
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ConfigError(f"{shown}: unknown key '{key}'{hint}")
    return common, sections
