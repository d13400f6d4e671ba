"""Parameter constraints: class-level data that says what each parameter accepts.

Each ``check(name, value)`` returns the value in a normal form (``int``, ``float``, ``bool``)
or raises ``TypeError`` (wrong type) or ``ValueError`` (out of range) with a message
that names the parameter, what it must be, and what it got.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Integer:
    """An int (not a bool) in ``[low, high)``; ``None`` leaves a side open."""

    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        if self.high is None:
            return "an int" if self.low is None else f"an int >= {self.low}"
        if self.low is None:
            return f"an int < {_power_of_two(self.high)}"
        return f"an int in [{_power_of_two(self.low)}, {_power_of_two(self.high)})"

    def check(self, name: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be {self.describe()}, got {value!r} ({type(value).__name__})")
        value = int(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value >= self.high):
            raise ValueError(f"{name} must be {self.describe()}, got {value}")
        return value


@dataclass(frozen=True)
class OpenInterval:
    """A finite real number strictly between ``low`` and ``high``."""

    low: float
    high: float

    def check(self, name: str, value) -> float:
        what = f"a real number in the open interval ({self.low:g}, {self.high:g})"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
        value = float(value)
        if not (math.isfinite(value) and self.low < value < self.high):
            raise ValueError(f"{name} must be {what}, got {value!r}")
        return value


@dataclass(frozen=True)
class Boolean:
    """``True`` or ``False`` (a Python or numpy bool; not 0 or 1)."""

    def check(self, name: str, value) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
        return bool(value)


@dataclass(frozen=True)
class OneOf:
    """One of a few strings."""

    options: tuple[str, ...]

    def check(self, name: str, value) -> str:
        if not isinstance(value, str) or value not in self.options:
            choices = ", ".join(repr(o) for o in self.options)
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        return value


def _power_of_two(x: int) -> str:
    """``2**64`` reads better than 18446744073709551616."""
    return f"2**{x.bit_length() - 1}" if x > 2**32 and x & (x - 1) == 0 else str(x)


def validate(constraints: dict, **values) -> dict:
    """Check each named value against its constraint; return the normalised values."""
    return {name: constraints[name].check(name, value) for name, value in values.items()}


COUNT = Integer(low=0, high=2**63)  # counts of keys: what a u64 header field holds and int64 sums
