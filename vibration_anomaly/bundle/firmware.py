"""The firmware's own statement of the duty cycle it runs, and the agreement check.

The fleet drained once because firmware and container each carried their own
copy of the duty cycle and the copies disagreed by 40 s. The firmware writes a
small file saying what it actually runs (``{"duty_cycle": {"sample_s": 5,
"period_s": 60}}``, JSON or YAML, same keys as the bundle payload); the loader
compares every field that both sides hold and refuses to boot on any
difference, naming the field and both values.

Agreement is exact: numbers compare by value (``60`` equals ``60.0``) and
nothing else is coerced, so ``"60"`` (a string) does not agree with ``60``.
A firmware field the bundle schema does not know is refused too: a typo such as
``perod_s`` would otherwise never be compared and the check would pass silently.
For the same reason a key containing ``.`` (``"duty_cycle.period_s": 60`` next
to a nested ``duty_cycle``) is refused: two values would share one name and only
the last would be compared.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vibration_anomaly.bundle.files import read_limited
from vibration_anomaly.bundle.refusal import BundleRefused

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # Python 3.10 (Humble robots)
        from importlib.abc import Traversable

MAX_FIRMWARE_FILE_BYTES = 16 * 1024
"""The firmware file is a handful of numbers; anything larger is refused before parsing."""

REQUIRED_FIRMWARE_FIELDS: tuple[str, ...] = ("duty_cycle.sample_s", "duty_cycle.period_s")
"""What the firmware must state: the very numbers the fleet once ran two copies of."""


# ---------------------------------------------------------------- strict YAML (shared with payload.py)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and anchors/aliases.

    A duplicate key would make a human reader and the loader see different
    values (PyYAML keeps the last); aliases let a few bytes expand into a huge
    structure. Neither belongs in a signed config.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        mark: Any = event.start_mark
        if isinstance(event, yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed here", mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "YAML anchors (&name) are not allowed here", mark)
        return super().compose_node(parent, index)


def _construct_mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable mapping key {key!r}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates
)


def strict_yaml_load(text: str) -> Any:
    """Parse YAML (or JSON, a subset) with the rules above; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader derives from SafeLoader


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 with a time zone, as a string or a YAML timestamp; raises ValueError otherwise."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        raise ValueError(f"expected a date *and time* with a time zone, got the date {value.isoformat()}")
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"expected an ISO 8601 time such as 2025-06-01T00:00:00Z, got {value!r}"
            ) from None
    else:
        raise ValueError(f"expected an ISO 8601 time string, got {type(value).__name__} {value!r}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"expected a time zone (e.g. a trailing Z), got {value!r}")
    return parsed.astimezone(timezone.utc)


# ---------------------------------------------------------------- firmware file


def read_firmware_statement(path: Path | Traversable) -> dict[str, Any]:
    """Read and shape-check the firmware file; refusals say which file and what is wrong."""
    source = str(path)
    try:
        data = read_limited(path, MAX_FIRMWARE_FILE_BYTES)
    except FileNotFoundError:
        raise BundleRefused(
            "firmware_missing",
            "firmware duty-cycle file does not exist; the firmware writes it at start-up "
            "(set require_firmware false only on a bench)",
            source=source,
        ) from None
    except OSError as exc:
        raise BundleRefused(
            "firmware_invalid", f"cannot read firmware file: {exc.strerror or exc}", source=source
        ) from exc
    if data is None:
        raise BundleRefused(
            "too_large",
            f"firmware file is larger than the {MAX_FIRMWARE_FILE_BYTES}-byte limit",
            source=source,
        )
    try:
        raw = strict_yaml_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleRefused(
            "firmware_invalid", f"firmware file does not parse as JSON/YAML: {exc}", source=source
        ) from exc
    if not isinstance(raw, Mapping):
        raise BundleRefused(
            "firmware_invalid",
            f'expected a mapping such as {{"duty_cycle": {{"sample_s": 5, "period_s": 60}}}}, '
            f"got {type(raw).__name__}",
            source=source,
        )
    try:
        flat = flatten(raw)
    except AmbiguousKeyError as exc:
        raise BundleRefused("firmware_invalid", str(exc), source=source, field=exc.name) from None
    for required in REQUIRED_FIRMWARE_FIELDS:
        if required not in flat:
            raise BundleRefused(
                "firmware_invalid",
                f"{required}: missing; the firmware file must state it",
                source=source,
                field=required,
            )
    return dict(raw)


class AmbiguousKeyError(ValueError):
    """A mapping key that cannot be given one unambiguous dotted name.

    ``{"duty_cycle": {"period_s": 20}, "duty_cycle.period_s": 60}`` would
    otherwise flatten both values to ``duty_cycle.period_s`` (last one wins),
    so the nested 20 would never be compared: a way around the firmware check.
    ``name`` is the dotted name of the offending key, ``problem`` says why.
    """

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


def flatten(tree: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; the dotted names used in every message.

    Raises :class:`AmbiguousKeyError` for a key that is not a string, contains a
    ``.``, or flattens to a name already taken, because then one dotted name
    would stand for two values and only one of them would be checked.
    """
    out: dict[str, Any] = {}
    _flatten_into(out, tree, prefix)
    return out


def _flatten_into(out: dict[str, Any], tree: Mapping[Any, Any], prefix: str) -> None:
    for key, value in tree.items():
        if not isinstance(key, str):
            raise AmbiguousKeyError(
                f"{prefix}{key!r}", f"keys must be strings, got {type(key).__name__} {key!r}"
            )
        name = f"{prefix}{key}"
        if "." in key:
            raise AmbiguousKeyError(
                name,
                f"key {key!r} contains '.'; nest it instead (dotted keys could hide a second value "
                "for the same field)",
            )
        if isinstance(value, Mapping) and value:
            _flatten_into(out, value, name + ".")
        elif name in out:  # unreachable without dots today; kept so a future key spelling cannot reopen it
            raise AmbiguousKeyError(name, "stated twice")
        else:
            out[name] = value


def format_value(value: Any) -> str:
    """Numbers as an operator wrote them (``60`` not ``60.0``); everything else unambiguous."""
    if isinstance(value, bool):
        return f"{value!r} (a boolean)"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    return f"{value!r} (a {type(value).__name__})"


def _agree(bundle_value: Any, firmware_value: Any) -> bool:
    if isinstance(bundle_value, datetime):
        try:
            return parse_timestamp(firmware_value) == bundle_value
        except ValueError:
            return False
    if isinstance(bundle_value, bool) or isinstance(firmware_value, bool):
        return type(bundle_value) is type(firmware_value) and bundle_value == firmware_value
    if isinstance(bundle_value, int | float):
        return isinstance(firmware_value, int | float) and float(firmware_value) == float(bundle_value)
    if bundle_value is None:
        return firmware_value is None
    return type(firmware_value) is type(bundle_value) and firmware_value == bundle_value


def compare_with_firmware(bundle_values: Mapping[str, Any], firmware: Mapping[str, Any], source: str) -> None:
    """Refuse unless every firmware field exists in the bundle and agrees exactly.

    ``bundle_values`` are the bundle's *effective* values (documented defaults
    filled in), because those are what the container will run. A firmware key
    containing ``.`` (or otherwise ambiguous) is refused as ``firmware_invalid``.
    """
    try:
        flat = flatten(firmware)
    except AmbiguousKeyError as exc:
        raise BundleRefused("firmware_invalid", str(exc), source=source, field=exc.name) from None
    unknown = sorted(name for name in flat if name not in bundle_values)
    if unknown:
        raise BundleRefused(
            "firmware_invalid",
            f"{unknown[0]}: not a bundle field, so it cannot be checked (known fields: "
            f"{', '.join(sorted(bundle_values))})",
            source=source,
            field=unknown[0],
        )
    mismatches = [
        (name, bundle_values[name], value)
        for name, value in flat.items()
        if not _agree(bundle_values[name], value)
    ]
    if mismatches:
        detail = "; ".join(
            f"{n}: bundle {format_value(b)}, firmware {format_value(f)}" for n, b, f in mismatches
        )
        raise BundleRefused("firmware_mismatch", f"{detail} (firmware file {source})", field=mismatches[0][0])
