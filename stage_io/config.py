"""Typed stage configs: dataclasses loaded from YAML, overridden with ``key=value``.

Every stage declares its config as a (nested) dataclass. ``load_config`` reads a YAML
file into it, applies command-line overrides (dotted keys for nesting, values parsed as
YAML so ``lr=3e-4`` is a float and ``keys=[topic,entity]`` a list) and checks every key
and type. An unknown or mistyped key is a ``ConfigError`` naming the key and where it
came from (the file, or the override), never a silent default.

A numeric key with a domain declares it once, in its type:
``temperature: Annotated[float, Domain(ge=0)]`` (or the aliases below, ``NonNegativeInt``,
``PositiveInt`` ...). ``load_config`` checks the value (each item of a list) and names the
key, the file and the allowed range; nothing downstream sees an out-of-domain value.

Some rules hold for every config, whatever its type says: a float must be finite (``.inf``
and ``.nan`` are refused), a key whose name ends in ``_dir`` must not be empty (an empty
path would write into the current directory), and a YAML file must not set one key twice
(the last value would win silently). The file is checked with the overrides applied, so an
override may complete it; an error that only the overrides cause names them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Sequence, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the stage's config dataclass."""


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a numeric key may take: bounds, inclusive (``ge``/``le``) or not (``gt``/``lt``),
    and one excluded value (``ne``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    # A single value excluded from the range (e.g. 0 where -1 means "no limit").
    ne: float | None = None
    # Why the bound exists, appended to the error (e.g. "0 means greedy").
    note: str = ""

    def admits(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
            and (self.ne is None or value != self.ne)
        )

    def describe(self) -> str:
        bounds = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt), ("!=", self.ne))
        parts = [f"{op} {bound:g}" for op, bound in bounds if bound is not None]
        return " and ".join(parts) + (f" ({self.note})" if self.note else "")


# The usual domains, so a config dataclass says which one a key has in its type.
NonNegativeInt = Annotated[int, Domain(ge=0)]
PositiveInt = Annotated[int, Domain(ge=1)]
NonNegativeFloat = Annotated[float, Domain(ge=0)]
PositiveFloat = Annotated[float, Domain(gt=0)]
# A sampling temperature: > 0, or exactly 0 for greedy decoding.
Temperature = Annotated[float, Domain(ge=0, note="0 means greedy")]
# A share of a whole (fractions, thresholds).
UnitInterval = Annotated[float, Domain(ge=0, le=1)]
# A share that must not be 0 (top_p, GPU memory utilisation).
ProperFraction = Annotated[float, Domain(gt=0, le=1)]
# Tokens in a training sequence: at least one input and the next token it predicts.
SequenceLength = Annotated[int, Domain(ge=2, note="a sequence needs an input and its next token")]
# An Adam beta: a decay rate in [0, 1).
Beta = Annotated[float, Domain(ge=0, lt=1)]
# A peak learning rate: above 1 every optimizer here diverges, so a larger value is a typo.
LearningRate = Annotated[float, Domain(gt=0, le=1, note="a learning rate above 1 diverges")]


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from a YAML file (optional) and ``key=value`` overrides.

    Each override is checked on its own first (its key and type, naming the override). The
    whole config is then built once, with the overrides applied: a file that is incomplete on
    its own but completed by an override is fine; an error in the file that the overrides do
    not fix names the file; an error the overrides cause (a rule across keys) names them.
    """
    raw: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    origin = str(path) if path is not None else "<defaults>"
    if not overrides:
        return _build(cls, raw, prefix="", origin=origin)
    try:
        _build(cls, copy.deepcopy(raw), prefix="", origin=origin)
        file_is_valid = True
    except ConfigError:
        file_is_valid = False
    for override in overrides:
        key, value = _split_override(override)
        _set_dotted(raw, key, value, cls, origin=f"command-line override '{override}'")
    if file_is_valid:
        listed = " ".join(f"'{o}'" for o in overrides)
        origin = f"command-line override{'s' if len(overrides) > 1 else ''} {listed} (on {origin})"
    return _build(cls, raw, prefix="", origin=origin)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping setting one key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, typing.Hashable) and key in seen:
                    raise ConfigError(
                        f"{self.name}: line {line}: key '{key}' is set twice (first on line {seen[key]}); remove one"
                    )
                if isinstance(key, typing.Hashable):
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    loader = _UniqueKeyLoader(path.read_text(encoding="utf-8"))
    loader.name = str(path)
    try:
        loaded = loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    finally:
        loader.dispose()
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def config_from_dict(cls: type[T], raw: Mapping[str, Any], origin: str) -> T:
    """Build ``cls`` from plain data (a manifest's resolved config); errors name ``origin``."""
    return _build(cls, raw, prefix="", origin=origin)


def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment, as written on the lines above it in the dataclass source (the house
    rule: every config field has one), joined into one line; "" where there is none."""
    import inspect

    fields = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, str] = {}
    # A field inherited from a base config (stage_io.vllm_engine) has its comment there; a
    # subclass that redeclares it has the last word.
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        comments.update(_comments_in_source(source, fields))
    return comments


def _comments_in_source(source: str, fields: set[str]) -> dict[str, str]:
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        name = stripped.split(":", 1)[0].strip()
        if ":" in stripped and name in fields and name not in comments:
            comments[name] = " ".join(pending)
        pending = []
    return comments


def config_to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain data (for manifests and hashing)."""
    return dataclasses.asdict(config)


def _split_override(override: str) -> tuple[str, Any]:
    if "=" not in override:
        raise ConfigError(f"command-line override '{override}' is not of the form key=value")
    key, text = override.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"command-line override '{override}' has an empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(values: dict[str, Any], key: str, value: Any, cls: type, origin: str) -> None:
    parts = key.split(".")
    node = values
    node_cls: Any = cls
    for depth, part in enumerate(parts):
        fields = _fields(node_cls)
        if part not in fields:
            where = ".".join(parts[:depth]) or "<top level>"
            raise ConfigError(
                f"{origin}: unknown key '{key}' ('{part}' is not a field of {where}; "
                f"known: {', '.join(sorted(fields))})"
            )
        if depth == len(parts) - 1:
            _coerce(value, fields[part], key, origin)  # type errors name the override
            node[part] = value
            return
        node_cls = _dataclass_of(fields[part])
        if node_cls is None:
            raise ConfigError(f"{origin}: '{'.'.join(parts[: depth + 1])}' is not a nested section")
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dataclass_of(tp: Any) -> type | None:
    if typing.get_origin(tp) is Annotated:
        return _dataclass_of(typing.get_args(tp)[0])
    if dataclasses.is_dataclass(tp):
        return tp
    if _is_optional(tp):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _dataclass_of(inner[0]) if len(inner) == 1 else None
    return None


def _is_optional(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _build(cls: type[T], raw: Mapping[str, Any], prefix: str, origin: str) -> T:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: '{prefix.rstrip('.') or '<top level>'}' must be a mapping")
    fields = _fields(cls)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key '{prefix}{unknown[0]}' (known keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, tp in fields.items():
        if name in raw:
            kwargs[name] = _coerce(raw[name], tp, f"{prefix}{name}", origin)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field with no default was not given
        raise ConfigError(f"{origin}: {cls.__name__}: {err}") from err
    except ValueError as err:  # __post_init__ validation
        raise ConfigError(f"{origin}: {err}") from err


def _coerce(value: Any, tp: Any, key: str, origin: str) -> Any:
    """``value`` checked against (and converted to) the type ``tp`` of ``key``."""
    if tp is Any:
        return value
    if typing.get_origin(tp) is Annotated:
        return _coerce_annotated(value, tp, key, origin)
    if _is_optional(tp):
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner[0] if len(inner) == 1 else Union[tuple(inner)], key, origin)
    if dataclasses.is_dataclass(tp):
        return _coerce_section(value, tp, key, origin)
    origin_tp = typing.get_origin(tp)
    if origin_tp is Literal:
        if value not in typing.get_args(tp):
            raise _expects(origin, key, "one of " + ", ".join(repr(c) for c in typing.get_args(tp)), value)
        return value
    if origin_tp in (list, Sequence, tuple):
        return _coerce_list(value, tp, key, origin)
    if origin_tp in (dict, Mapping):
        return _coerce_mapping(value, tp, key, origin)
    if tp in _SCALARS:
        return _SCALARS[tp](value, key, origin)
    if origin_tp in (Union, types.UnionType):
        return _coerce_union(value, tp, key, origin)
    return value


def _expects(origin: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{origin}: key '{key}' expects {expected}, got {value!r}")


def _coerce_annotated(value: Any, tp: Any, key: str, origin: str) -> Any:
    """The base type's check, then each ``Domain`` of the annotation."""
    base, *extras = typing.get_args(tp)
    value = _coerce(value, base, key, origin)
    for domain in extras:
        if isinstance(domain, Domain) and isinstance(value, (int, float)) and not domain.admits(value):
            raise ConfigError(f"{origin}: key '{key}' must be {domain.describe()}, got {value!r}")
    return value


def _coerce_section(value: Any, tp: type, key: str, origin: str) -> Any:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise _expects(origin, key, f"a mapping for section {tp.__name__}", value)
    return _build(tp, value, prefix=f"{key}.", origin=origin)


def _coerce_list(value: Any, tp: Any, key: str, origin: str) -> list | tuple:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _expects(origin, key, "a list", value)
    args = typing.get_args(tp)
    item_tp = args[0] if args else Any
    items = [_coerce(v, item_tp, f"{key}[{i}]", origin) for i, v in enumerate(value)]
    return tuple(items) if typing.get_origin(tp) is tuple else items


def _coerce_mapping(value: Any, tp: Any, key: str, origin: str) -> dict:
    if not isinstance(value, Mapping):
        raise _expects(origin, key, "a mapping", value)
    args = typing.get_args(tp)
    val_tp = args[1] if len(args) == 2 else Any
    return {str(k): _coerce(v, val_tp, f"{key}.{k}", origin) for k, v in value.items()}


def _coerce_union(value: Any, tp: Any, key: str, origin: str) -> Any:
    """The first member type that takes ``value``."""
    for option in typing.get_args(tp):
        try:
            return _coerce(value, option, key, origin)
        except ConfigError:
            continue
    raise _expects(origin, key, " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(tp)), value)


def _coerce_bool(value: Any, key: str, origin: str) -> bool:
    if not isinstance(value, bool):
        raise _expects(origin, key, "true or false", value)
    return value


def _coerce_int(value: Any, key: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expects(origin, key, "an integer", value)
    return value


def _coerce_float(value: Any, key: str, origin: str) -> float:
    """A finite number; a string YAML 1.1 did not read as one (3e-4, without a dot) is converted."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _expects(origin, key, "a number", value) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _expects(origin, key, "a number", value)
    try:
        number = float(value)
    except OverflowError:
        raise _expects(origin, key, "a finite number", value) from None
    if not math.isfinite(number):
        raise _expects(origin, key, "a finite number", value)
    return number


def _coerce_str(value: Any, key: str, origin: str) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise _expects(origin, key, "a string", value)
    if key.rsplit(".", 1)[-1].endswith("_dir") and not str(value).strip():
        raise _expects(origin, key, "a non-empty path (an empty one means the current directory)", value)
    return str(value)


# The check of each scalar type a config field may have.
_SCALARS: dict[type, Callable[[Any, str, str], Any]] = {
    bool: _coerce_bool,
    int: _coerce_int,
    float: _coerce_float,
    str: _coerce_str,
}
