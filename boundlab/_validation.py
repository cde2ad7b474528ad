"""Input checks shared by the public functions; each error names the argument and the fix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}")
    return value


def check_tensor(name: str, value: object) -> Tensor:
    """Raise TypeError unless ``value`` is a torch.Tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; convert it with torch.as_tensor")
    return value


def check_floating(name: str, value: Tensor) -> Tensor:
    """Raise TypeError unless ``value`` has a floating-point dtype."""
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}; cast it with .float()")
    return value


def check_no_nan(name: str, value: Tensor) -> Tensor:
    """Raise ValueError naming the first row (or element) of ``value`` that contains NaN."""
    nan = torch.isnan(value)
    if bool(nan.any()):
        first = torch.nonzero(nan)[0].tolist()
        where = f"row {first[0]}, column {first[1]}" if value.dim() == 2 else f"index {tuple(first)}"
        raise ValueError(f"{name} contains NaN at {where}; NaN scores cannot be ranked, fix or drop that row")
    return value


def check_all_finite(name: str, value: Tensor) -> Tensor:
    """Raise ValueError naming the first non-finite element of ``value``."""
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        first = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(f"{name} must be finite, found {value[first].item()} at index {first}")
    return value


def check_scores(name: str, scores: object) -> Tensor:
    """Check a ``(U, N)`` floating score matrix with N >= 1 and no NaN; infinities are allowed."""
    scores = check_tensor(name, scores)
    if scores.dim() != 2:
        raise ValueError(f"{name} must have shape (users, items), got shape {tuple(scores.shape)}")
    if scores.shape[1] == 0:
        raise ValueError(f"{name} has an empty catalogue (shape {tuple(scores.shape)}); at least one item is needed")
    check_floating(name, scores)
    return check_no_nan(name, scores)


def check_index_vector(name: str, index: object, length: int, upper: int) -> Tensor:
    """Check a ``(length,)`` integer tensor with values in ``[0, upper)``."""
    index = check_tensor(name, index)
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise TypeError(f"{name} must have an integer dtype (e.g. torch.long), got {index.dtype}")
    if index.dim() != 1 or index.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},) to match the score rows, got shape {tuple(index.shape)}")
    bad = (index < 0) | (index >= upper)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"{name}[{row}] = {int(index[row])} is out of range; expected a 0-based item column in [0, {upper - 1}]"
        )
    return index


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as int if it is an integer >= 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def read_named_json(
    name_or_path: str | os.PathLike[str], folder: str | os.PathLike[str], kind: str
) -> tuple[Path, dict[str, Any]]:
    """Read ``folder/NAME.json`` (a bare name) or a JSON file path; errors name the file, line and known names."""
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(folder) / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(folder).glob("*.json"))) or "none"
        raise FileNotFoundError(f"{kind} {str(name_or_path)!r} not found at {path}; known {kind}s: {known}")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: invalid JSON in {kind} ({error.msg})") from None
