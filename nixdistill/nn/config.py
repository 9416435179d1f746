"""Config helpers of the model packages: typed dataclasses from JSON dicts, shared invariants.

The model configs (``VITSConfig``, the student encoder and decoder configs) are dataclasses
whose ``__post_init__`` checks their invariants; :func:`from_dict` builds them from plain JSON
values. :mod:`nixdistill.config` re-exports both functions for the application's own configs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, TypeVar

from nixdistill.errors import ConfigError

__all__ = ["from_dict", "check_upsampling"]

T = TypeVar("T")


def _type_ok(value: Any, tp: Any) -> bool:
    """Loose structural check of JSON values against dataclass annotations."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    return True


def from_dict(cls: type[T], d: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a JSON dict, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass type.
        d: its fields as plain JSON values.
        where: a location used in error messages (file and section).

    Raises:
        ConfigError: on an unknown key, a wrong type, or an invariant broken in
            ``__post_init__``.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a JSON object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; allowed: {sorted(names)}"
        )
    for k, v in d.items():
        if not _type_ok(v, hints[k]):
            raise ConfigError(f"{where or cls.__name__}.{k}: {v!r} is not a valid {hints[k]}")
    try:
        return cls(**d)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def check_upsampling(upsample_rates: list[int], hop_length: int, where: str = "model") -> None:
    """Invariant shared by every vocoder: ``prod(upsample_rates) == hop_length``.

    Raises:
        ConfigError: when the product differs.
    """
    if math.prod(upsample_rates) != hop_length:
        raise ConfigError(
            f"{where}: prod(upsample_rates) = {math.prod(upsample_rates)} must equal "
            f"audio.hop_length = {hop_length}"
        )
