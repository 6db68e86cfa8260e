"""Configs: dataclasses loaded from YAML, with `key=value` overrides and errors that name the bad key."""

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from arc_kit.base.errors import ArcKitError, ConfigValueError
from arc_kit.base.files import atomic_write_text, read_text

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config class: any dataclass

# Shipped configs live in `configs/` of a checkout; an installed wheel carries them as `arc_kit/configs`.
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # arc_kit/ (its parent is a checkout's root)


def config_roots() -> list[Path]:
    roots = [PACKAGE_DIR / "configs", PACKAGE_DIR.parent / "configs"]
    return [r for r in roots if r.is_dir()]


def resolve_config_path(name: str | Path, subdir: str = "") -> Path:
    """A path as given, or the bare name of a shipped config (`cpu-demo`, `reference`, `voting/reference`)."""
    p = Path(name)
    if p.exists() and not p.is_dir():  # a FIFO or device is refused by read_yaml, never searched past
        return p
    if p.suffix in (".yaml", ".yml") and (p.parent != Path(".") or p.exists()):
        raise ArcKitError(f"{p}: config file not found")
    stem = str(name).removesuffix(".yaml").removesuffix(".yml")
    candidates = []
    for root in config_roots():
        for rel in ([f"{subdir}/{stem}.yaml"] if subdir else []) + [f"{stem}.yaml"]:
            candidates.append(root / rel)
    for c in candidates:
        if c.is_file():
            return c
    available = (
        sorted(
            {
                str(f.relative_to(r).with_suffix(""))
                for r in config_roots()
                for f in (r / subdir if subdir else r).glob("*.yaml")
            }
        )
        if config_roots()
        else []
    )
    raise ArcKitError(f"{name}: no such config file or shipped config (shipped: {', '.join(available) or 'none'})")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert one YAML value to the annotated type; `key` is the dotted key for errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ArcKitError as e:
                errors.append(str(e))
        raise ArcKitError(errors[0] if errors else f"config key '{key}': invalid value {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a nested config class (never an instance)
        if not isinstance(value, dict):
            raise ArcKitError(f"config key '{key}': expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ArcKitError(f"config key '{key}': expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ArcKitError(f"config key '{key}': expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ArcKitError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ArcKitError(f"config key '{key}': expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ArcKitError(f"config key '{key}': expected an integer, got {value!r}") from None
        if f != int(f):
            raise ArcKitError(f"config key '{key}': expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        # PyYAML reads `1e-4` as a string (YAML 1.1): accept any numeric string.
        if isinstance(value, bool):
            raise ArcKitError(f"config key '{key}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ArcKitError(f"config key '{key}': expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ArcKitError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ArcKitError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types name the dotted key. A key listed in the
    dataclass's `RENAMED` table ({old key: new dotted key}, a ClassVar) fails with one line naming its new name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ArcKitError(f"config{' key ' + repr(prefix.rstrip('.')) if prefix else ''}: expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    for k, v in data.items():
        if k not in fields and k in renamed:
            raise ArcKitError(f"config key '{prefix}{k}' was renamed: use '{renamed[k]}'")
        if k not in fields:
            raise ArcKitError(f"unknown config key '{prefix}{k}' (known: {', '.join(fields)})")
        kwargs[k] = _coerce(v, hints[k], prefix + str(k))
    try:
        return cls(**kwargs)
    except ConfigValueError as e:  # the dataclass's own range checks: name the full dotted key
        raise ConfigValueError(prefix + e.key, e.message) from None
    except TypeError as e:
        raise ArcKitError(f"config{' ' + prefix.rstrip('.') if prefix else ''}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-friendly data from a (nested) dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ArcKitError(f"override '{item}': expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ArcKitError(f"override '{item}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ArcKitError(f"override '{key}': value nested too deeply") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set `a.b.c=value` items into a nested dict (values parsed as YAML scalars)."""
    data = json.loads(json.dumps(data or {}))
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_text(path, "config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ArcKitError(f"{path}: malformed YAML{where}") from None
    except RecursionError:
        raise ArcKitError(f"{path}: YAML nested too deeply to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArcKitError(f"{path}: a config must be a YAML mapping")
    return data


def load_config(
    cls: type[T], source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), subdir: str = ""
) -> T:
    """Load `cls` from a YAML path or shipped name (or defaults when None), then apply overrides."""
    data = read_yaml(resolve_config_path(source, subdir)) if source is not None else {}
    data = apply_overrides(data, overrides)
    where = f"{source}: " if source is not None else ""
    try:
        return from_dict(cls, data)
    except ArcKitError as e:
        raise ArcKitError(f"{where}{e}") from None


def save_config(obj: Any, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


def config_hash(obj: Any) -> str:
    """A short, stable hash of a config's content (for provenance and resume checks)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
