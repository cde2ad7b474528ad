"""GRU4Rec-style sequential recommender (after Hidasi et al., 2016, arXiv:1511.06939).

Item embeddings pass through dropout and a GRU. A linear projection maps each GRU output back to
the embedding dimension, so item scores reuse the item embedding table exactly as in SASRec:
the score of item ``v`` after a history is ``encode_last(history) · item_embedding[v]``.

Left padding: the GRU starts from a zero state at the first real item of each row and never
steps over padding (rows are packed with their true lengths). Outputs at real columns therefore
do not depend on how much left padding a row carries, and padding columns return zero vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from boundlab.models.inputs import CatalogueScoring, validate_sequences


@dataclass
class GRU4RecConfig:
    """Hyperparameters of :class:`GRU4Rec`.

    ``max_len`` is the longest input that ``forward`` accepts. The GRU itself has no length
    limit, but a shared ``max_len`` lets the data pipeline truncate histories as for SASRec.
    """

    n_items: int
    max_len: int = 50
    embedding_dim: int = 64
    hidden: int = 64
    n_layers: int = 1
    # 0.25 is the embedding dropout default of the CE/SCE authors' GRU4Rec script
    # (github.com/MTandHJ/CE-SCE-LLMRec, GRU4Rec/main.py). That script has no output dropout.
    dropout: float = 0.25
    init_std: float = 0.02

    def __post_init__(self) -> None:
        """Raise ValueError when a field is out of range."""
        for name in ("n_items", "max_len", "embedding_dim", "hidden", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GRU4RecConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GRU4RecConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.init_std <= 0.0:
            raise ValueError(f"GRU4RecConfig.init_std must be positive, got {self.init_std!r}")


def _roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Return ``y`` (B, L, d) with ``y[b, t] = x[b, (t + shifts[b]) mod L]``, a per-row roll."""
    length = x.shape[1]
    columns = torch.arange(length, device=x.device)
    source = (columns[None, :] + shifts[:, None]) % length
    return torch.gather(x, 1, source.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class GRU4Rec(CatalogueScoring, nn.Module):
    """GRU encoder with item scores taken from the shared item embedding table.

    Input: a LongTensor (B, L) of item ids 1..n_items, left-padded with 0, most recent item
    last, with L <= max_len. Initialisation: the item embedding and the projection weight are
    drawn from N(0, init_std²) with torch's global generator, the projection bias is zero, the
    padding row 0 is zero, and the GRU keeps PyTorch's default U(-1/sqrt(hidden), 1/sqrt(hidden)).
    Call ``torch.manual_seed`` first for a reproducible model.
    """

    def __init__(self, config: GRU4RecConfig) -> None:
        """Build the item embedding, the GRU and the output projection."""
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items + 1, config.embedding_dim, padding_idx=0)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.embedding_dim,
            config.hidden,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(config.hidden, config.embedding_dim)

        nn.init.normal_(self.item_embedding.weight, mean=0.0, std=config.init_std)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        nn.init.normal_(self.projection.weight, mean=0.0, std=config.init_std)
        nn.init.zeros_(self.projection.bias)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Return hidden states (B, L, embedding_dim) for every column. Padding columns are zero."""
        validate_sequences(seqs, self.config.n_items, self.config.max_len)
        batch, length = seqs.shape
        dtype = self.item_embedding.weight.dtype
        if batch == 0 or length == 0:
            return seqs.new_zeros(batch, length, self.config.embedding_dim, dtype=dtype)

        is_real = seqs != 0
        keep = is_real.unsqueeze(-1).to(dtype)
        lengths = is_real.sum(dim=1)
        x = self.embedding_dropout(self.item_embedding(seqs)) * keep

        # Move each row's real items to the front (right padding), run the packed GRU so that it
        # starts at the first real item, then move the outputs back. An all-padding row runs one
        # step on a zero input; masking the result below discards it.
        padding = length - lengths
        x = _roll_rows(x, padding)
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        packed_out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=length)
        out = _roll_rows(out, -padding)

        return self.projection(self.output_dropout(out)) * keep


__all__ = ["GRU4Rec", "GRU4RecConfig"]
