"""SASRec: self-attentive sequential recommendation (Kang & McAuley, 2018, arXiv:1808.09781).

Each block applies causal self-attention and then a point-wise feed-forward network. Both
sublayers use the pre-norm residual form ``x + Dropout(sublayer(LayerNorm(x)))`` from the paper,
and a final layer norm follows the last block. Output scores reuse the item embedding table, so
the score of item ``v`` after a history is ``encode_last(history) · item_embedding[v]``.

Positions: the position of a real item is the number of real items before it in its row (0 for
the oldest item kept). Positions therefore depend only on the real items, not on how much left
padding the row carries. In eval mode the output at column ``t`` therefore equals
``encode_last`` of the row cut after column ``t``. Padding columns are zeroed before the first
block, and their outputs are zero vectors.

The public SASRec script of the CE/SCE authors (github.com/MTandHJ/CE-SCE-LLMRec, SASRec/main.py)
differs in four ways. It normalizes only the attention query, and its feed-forward residual adds
the normalized input. It uses xavier-normal init and absolute column positions, and it lets real
positions attend to padding keys. The parameter count is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from boundlab.models.inputs import CatalogueScoring, validate_sequences


@dataclass
class SASRecConfig:
    """Hyperparameters of :class:`SASRec`.

    The defaults are the settings used for CE and SCE training on Amazon Beauty: 2 blocks, 1 head,
    hidden size 64, max length 50 and dropout 0.6. ``scale_item_embeddings`` multiplies the input
    item embeddings by sqrt(hidden) before positions are added, as the CE/SCE authors' script does.
    It does not change the output embeddings used for scores.
    """

    n_items: int
    max_len: int = 50
    hidden: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.6
    layer_norm_eps: float = 1e-8
    init_std: float = 0.02
    scale_item_embeddings: bool = True

    def __post_init__(self) -> None:
        """Raise ValueError when a field is out of range or ``hidden`` does not split into heads."""
        for name in ("n_items", "max_len", "hidden", "n_blocks", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SASRecConfig.{name} must be a positive int, got {value!r}")
        if self.hidden % self.n_heads != 0:
            raise ValueError(
                f"SASRecConfig.hidden ({self.hidden}) must be divisible by n_heads "
                f"({self.n_heads}). Pick a head count that divides it."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.layer_norm_eps <= 0.0:
            raise ValueError(
                f"SASRecConfig.layer_norm_eps must be positive, got {self.layer_norm_eps!r}"
            )
        if self.init_std <= 0.0:
            raise ValueError(f"SASRecConfig.init_std must be positive, got {self.init_std!r}")


class CausalSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention in which a real position attends only to itself
    and earlier real positions, never to padding."""

    def __init__(self, config: SASRecConfig) -> None:
        """Create the fused query/key/value projection and the output projection."""
        super().__init__()
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.out = nn.Linear(config.hidden, config.hidden)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Attend over ``x`` (B, L, d). ``allowed`` (B, 1, L, L) is True where query i may see key j."""
        batch, length, hidden = x.shape
        head_dim = hidden // self.n_heads

        q, k, v = self.qkv(x).split(hidden, dim=-1)
        q = q.view(batch, length, self.n_heads, head_dim).transpose(1, 2)
        k = k.view(batch, length, self.n_heads, head_dim).transpose(1, 2)
        v = v.view(batch, length, self.n_heads, head_dim).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
        return self.out(attended)


class PointWiseFeedForward(nn.Module):
    """Two linear layers with a ReLU between them, applied to each position separately."""

    def __init__(self, config: SASRecConfig) -> None:
        """Create the two ``hidden -> hidden`` linear layers and the inner dropout."""
        super().__init__()
        self.fc1 = nn.Linear(config.hidden, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.hidden)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, L, d) to (B, L, d) as ``fc2(Dropout(ReLU(fc1(x))))``."""
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class Block(nn.Module):
    """One SASRec block: pre-norm residual self-attention, then a pre-norm residual feed-forward."""

    def __init__(self, config: SASRecConfig) -> None:
        """Create the two sublayers, their layer norms and the residual dropout."""
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.attention = CausalSelfAttention(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.feed_forward = PointWiseFeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Apply ``x + Dropout(attention(LN(x)))``, then ``x + Dropout(ffn(LN(x)))``."""
        x = x + self.dropout(self.attention(self.attention_norm(x), allowed))
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x


class SASRec(CatalogueScoring, nn.Module):
    """SASRec encoder with item scores taken from the shared item embedding table.

    Input: a LongTensor (B, L) of item ids 1..n_items, left-padded with 0, most recent item
    last, with L <= max_len. Initialisation: embeddings and linear weights are drawn from
    N(0, init_std²) with torch's global generator, biases are zero, layer norms start as identity
    and the padding row 0 is zero. Call ``torch.manual_seed`` first for a reproducible model.
    """

    def __init__(self, config: SASRecConfig) -> None:
        """Build the embeddings, ``config.n_blocks`` blocks and the final layer norm."""
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items + 1, config.hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, config.hidden)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_blocks))
        self.final_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Return hidden states (B, L, hidden) for every column. Padding columns are zero vectors."""
        validate_sequences(seqs, self.config.n_items, self.config.max_len)
        batch, length = seqs.shape
        dtype = self.item_embedding.weight.dtype
        if batch == 0 or length == 0:
            return seqs.new_zeros(batch, length, self.config.hidden, dtype=dtype)

        is_real = seqs != 0
        keep = is_real.unsqueeze(-1).to(dtype)

        # Count real items from the left so that extra left padding shifts no position.
        positions = (is_real.long().cumsum(dim=1) - 1).clamp(min=0)
        item_scale = math.sqrt(self.config.hidden) if self.config.scale_item_embeddings else 1.0
        x = self.item_embedding(seqs) * item_scale + self.position_embedding(positions)
        x = self.embedding_dropout(x) * keep

        # Query i may see key j when j <= i and j is a real item. Each column may also see itself,
        # so a padding query, whose earlier keys are all padding, never has an all-masked softmax
        # row. Such a row is 0/0: torch 2.13's CPU kernels return zeros for it, but other versions
        # and backends may return NaN. A real query already attends to itself, so the diagonal adds nothing.
        causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
        itself = torch.eye(length, dtype=torch.bool, device=seqs.device)
        allowed = (causal & is_real[:, None, :]) | itself
        allowed = allowed.unsqueeze(1)

        for block in self.blocks:
            # Real columns never read padding columns, so resetting padding to zero after each
            # block only keeps the padding outputs at exactly zero.
            x = block(x, allowed) * keep

        return self.final_norm(x) * keep


__all__ = ["SASRec", "SASRecConfig"]
