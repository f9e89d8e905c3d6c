"""Building config dataclasses from YAML files, nested dicts and `key=value` overrides, key by key.

Generic over dataclasses: `trainables.config` (the run config) and `search.sweep` (the sweep section) both
build theirs with `build_dataclass`, and check them with `check_fields`, which applies the rule each field
carries in its metadata (`checked(...)`), so a range check sits next to the field it checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import MISSING, field
from pathlib import Path
from typing import Any, Callable, Optional, get_args, get_origin, get_type_hints

import yaml

from xlamaml.trainables.errors import ConfigError

Rule = Callable[[Any], Optional[str]]  # value -> None when fine, else "expected ..., got ..."


def checked(default: Any = MISSING, *, rule: Rule, default_factory: Any = MISSING) -> Any:
    """Return a dataclass field whose values `check_fields` checks with `rule`."""
    return field(default=default, default_factory=default_factory, metadata={"rule": rule})


def positive_int(v: Any) -> str | None:
    """Return why `v` is not an integer >= 1, or None."""
    return None if v >= 1 else f"expected a positive integer, got {v}"


def non_negative_int(v: Any) -> str | None:
    """Return why `v` is not an integer >= 0, or None."""
    return None if v >= 0 else f"expected an integer >= 0, got {v}"


def positive_int_or_none(v: Any) -> str | None:
    """Return why `v` is neither null nor an integer >= 1, or None."""
    return None if v is None or v >= 1 else f"expected a positive integer or null, got {v}"


def positive_number(v: Any) -> str | None:
    """Return why `v` is not a finite number > 0, or None."""
    return None if 0 < v < math.inf else f"expected a number > 0 (finite), got {v}"


def learning_rate(v: Any) -> str | None:
    """Return why `v` is not a positive, finite learning rate, or None."""
    return None if 0 < v < math.inf else f"expected a positive learning rate (finite), got {v}"


def non_negative(v: Any) -> str | None:
    """Return why `v` is not a finite number >= 0, or None."""
    return None if 0 <= v < math.inf else f"expected a number >= 0 (finite), got {v}"


def seed_value(v: Any) -> str | None:
    """Return why `v` is not a seed the RNGs take (an integer from 0 to 2**32 - 1: numpy's range), or None."""
    return None if 0 <= v < 2**32 else f"expected an integer from 0 to {2**32 - 1}, got {v}"


def unit_interval(v: Any) -> str | None:
    """Return why `v` is not a number from 0 to 1, or None."""
    return None if 0 <= v <= 1 else f"expected a number from 0 to 1, got {v}"


def open_unit_interval(v: Any) -> str | None:
    """Return why `v` is not a number strictly between 0 and 1, or None."""
    return None if 0 < v < 1 else f"expected a number between 0 and 1, got {v}"


def one_of(*allowed: str) -> Rule:
    """Return a rule that accepts exactly the values `allowed`."""
    def rule(v: Any) -> str | None:
        return None if v in allowed else f"expected one of {', '.join(allowed)}; got {v!r}"
    return rule


def check_fields(obj: Any, prefix: str = "") -> None:
    """Return None once every field of the dataclass `obj` (and nested ones) passes its rule; else raise ConfigError."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{prefix}{f.name}.")
        elif "rule" in f.metadata:
            problem = f.metadata["rule"](value)
            if problem:
                raise ConfigError(f"config key {prefix}{f.name}: {problem}")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Return a `cls` dataclass filled from `values`, checking names and types key by key."""
    if not isinstance(values, dict):
        raise ConfigError(f"config key {prefix.rstrip('.') or '<root>'}: expected a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}; {hint}expected one of {', '.join(sorted(names))}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Return `value` converted to the annotated type `tp`, or raise ConfigError naming `key`."""
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value if value is not None else {}, key + ".")
    origin, args = get_origin(tp), get_args(tp)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(inner, value, key)
    if origin is list:
        if isinstance(value, str):  # "--set meta.query_langs=hi,de"
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"config key {key}: expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key}: expected a string, got {value!r}")
        return value
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Return nested dicts from `key.sub=value` strings; values are read as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. meta.inner_lr=1e-4")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # `--set model=tiny --set model.name=x`
                raise ConfigError(f"--set {pair!r}: {'.'.join(parts[:i + 1])} was set to a value by another --set; "
                                  f"expected either the section's keys or one value for it")
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise ConfigError(f"--set {pair!r}: {key.strip()} is a section another --set gave keys of; expected "
                              f"either the section's keys or one value for it")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `base` updated recursively by `override` (neither is modified)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Return the mapping in a YAML file, or raise ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte {e.object[e.start]:#04x}); expected a UTF-8 text file") \
            from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return values


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """Return {"meta": {"inner_lr": x}} from {"meta.inner_lr": x}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out
