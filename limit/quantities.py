"""Kubernetes resource quantities ("64Gi", "500m", "1.5"), read the way the API server reads them."""

from __future__ import annotations

import math
import re

_SUFFIXES = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)$")


def parse_quantity(text: str | float | int) -> float:
    """The quantity's value (bytes for memory and storage, cores for CPU); ValueError if it is not one."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(3) not in _SUFFIXES or (match.group(2) and match.group(3)):
        raise ValueError(f"'{text}' is not a Kubernetes quantity (e.g. 64Gi, 500m, 2)")
    number = float(match.group(1)) * (10 ** int(match.group(2)) if match.group(2) else 1)
    return number * _SUFFIXES[match.group(3)]


def gibibytes(value_gib: float) -> str:
    """A quantity of at least `value_gib` GiB, in whole GiB."""
    return f"{max(1, math.ceil(value_gib))}Gi"
