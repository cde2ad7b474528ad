"""Input check shared by the sequence models."""

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
