"""Sequential recommenders that turn a user's history into a score for every item.

Conventions shared by every model here:

- Item ids are 1..n_items and id 0 is padding. The item embedding table has n_items + 1 rows,
  and row 0 is the padding row, which is never a candidate.
- Input ``seqs`` is a LongTensor (B, L) with L <= ``config.max_len``, left-padded with 0 and with
  the most recent item in the last column. Real columns do not depend on later columns nor on
  how much left padding a row has. Padding columns return zero vectors, even in an all-padding
  row.
- Scores reuse the input item embeddings, and the score of item v is in column v - 1.

Interface (see :class:`SequentialRecommender`):

- ``forward(seqs) -> (B, L, d)``: hidden state at every column.
- ``encode_last(seqs) -> (B, d)``: hidden state at the last column, used to rank after a history.
- ``candidate_embeddings() -> (n_items, d)``: item embedding rows 1..n_items.
- ``score_all(seqs) -> (B, n_items)``: ``encode_last(seqs) @ candidate_embeddings().T``.
- ``config``: the dataclass the model was built from. A checkpoint can store
  ``dataclasses.asdict(model.config)`` and rebuild the model with :func:`build_model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from boundlab.models.gru4rec import GRU4Rec, GRU4RecConfig
from boundlab.models.sasrec import SASRec, SASRecConfig


@runtime_checkable
class SequentialRecommender(Protocol):
    """Structural type of the models in this package (see the module docstring)."""

    config: Any

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Return hidden states (B, L, d) for left-padded ``seqs`` (B, L)."""
        ...

    def encode_last(self, seqs: torch.Tensor) -> torch.Tensor:
        """Return the hidden state (B, d) at the last column."""
        ...

    def candidate_embeddings(self) -> torch.Tensor:
        """Return the output embeddings (n_items, d) of items 1..n_items."""
        ...

    def score_all(self, seqs: torch.Tensor) -> torch.Tensor:
        """Return scores (B, n_items), column v - 1 for item v."""
        ...


MODEL_CONFIGS: dict[str, type] = {
    "sasrec": SASRecConfig,
    "gru4rec": GRU4RecConfig,
}

MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
}


def build_model(name: str, config_kwargs: Mapping[str, Any]) -> nn.Module:
    """Build the model registered as ``name`` from keyword arguments of its config dataclass.

    Raises ValueError for an unknown name, for unknown or missing config fields, and (from the
    config) for out-of-range values.
    """
    if name not in MODEL_CONFIGS:
        valid = ", ".join(sorted(MODEL_CONFIGS))
        raise ValueError(f"unknown model {name!r}. Valid names are: {valid}")

    config_class = MODEL_CONFIGS[name]
    field_names = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(config_kwargs) - field_names)
    if unknown:
        raise ValueError(
            f"unknown {config_class.__name__} fields {unknown}. "
            f"Valid fields are: {', '.join(sorted(field_names))}"
        )

    missing = sorted(
        field.name
        for field in dataclasses.fields(config_class)
        if field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
        and field.name not in config_kwargs
    )
    if missing:
        raise ValueError(
            f"{config_class.__name__} requires fields {missing}. Pass them in config_kwargs."
        )

    config = config_class(**config_kwargs)
    return MODEL_CLASSES[name](config)


__all__ = [
    "MODEL_CLASSES",
    "MODEL_CONFIGS",
    "GRU4Rec",
    "GRU4RecConfig",
    "SASRec",
    "SASRecConfig",
    "SequentialRecommender",
    "build_model",
]
