"""Input check and scoring methods shared by the sequence models."""

from __future__ import annotations

import torch


def validate_sequences(seqs: torch.Tensor, n_items: int, max_len: int) -> None:
    """Raise ValueError unless ``seqs`` is a left-padded (B, L) LongTensor of ids in 0..n_items."""
    if seqs.dtype != torch.long or seqs.dim() != 2:
        raise ValueError(
            f"seqs must be a 2-D LongTensor (batch, length), got dtype {seqs.dtype} "
            f"with shape {tuple(seqs.shape)}"
        )
    if seqs.shape[1] > max_len:
        raise ValueError(
            f"seqs has length {seqs.shape[1]} but max_len is {max_len}. "
            f"Keep only the last {max_len} items of each history"
        )
    if seqs.numel() == 0:
        return
    low, high = int(seqs.min()), int(seqs.max())
    if low < 0 or high > n_items:
        raise ValueError(
            f"item ids must lie in 0..{n_items} (0 is padding), got values in {low}..{high}"
        )
    is_real = seqs != 0
    if bool((is_real[:, :-1] & ~is_real[:, 1:]).any()):
        raise ValueError(
            "seqs must be left-padded, but a padding id 0 follows a real item in some row. "
            "Put all padding before the first real item"
        )


class CatalogueScoring:
    """Scoring methods shared by models whose output layer is the item embedding table.

    Subclasses define ``forward(seqs) -> (B, L, d)`` and an ``item_embedding`` whose row 0 is padding.
    """

    def encode_last(self, seqs: torch.Tensor) -> torch.Tensor:
        """Return the hidden state (B, d) at the last column, the most recent item."""
        return self.forward(seqs)[:, -1, :]

    def candidate_embeddings(self) -> torch.Tensor:
        """Return the output embeddings (n_items, d): item embedding rows 1..n_items."""
        return self.item_embedding.weight[1:]

    def score_all(self, seqs: torch.Tensor) -> torch.Tensor:
        """Score every item after each history: (B, n_items), column v-1 for item v."""
        return self.encode_last(seqs) @ self.candidate_embeddings().T

    def num_parameters(self) -> int:
        """Return the number of trainable parameters, the padding row included."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
