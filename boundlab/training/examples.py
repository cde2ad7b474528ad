"""Next-item training examples at every position of each user's training sequence.

For a training sequence s (the user's items without the validation and test items), the model
reads ``s[:-1]`` and must predict ``s[t + 1]`` at position t. Only the most recent
``max_len + 1`` items are kept, so inputs and targets both fit in ``max_len`` columns. Both are
left-padded with 0, and column c of the targets is the item that follows column c of the inputs.

Example with max_len 4 and s = [5, 6, 7]: inputs [0, 0, 5, 6], targets [0, 0, 6, 7].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from boundlab.evaluation import left_pad


@dataclass(frozen=True, eq=False)
class TrainingExamples:
    """Padded ``(U, max_len)`` int64 ``inputs`` and ``targets`` (item ids, 0 where there is none).

    ``users`` gives each row's position in the training sequences passed in. Users whose
    sequence has fewer than two items contribute no position and no row.
    """

    inputs: np.ndarray
    targets: np.ndarray
    users: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_positions(self) -> int:
        """Number of (input prefix, next item) pairs, the non-zero targets."""
        return int(np.count_nonzero(self.targets))


def build_training_examples(sequences: Sequence[np.ndarray], max_len: int) -> TrainingExamples:
    """Build the every-position examples of the module docstring from the training sequences."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    users = np.flatnonzero(lengths >= 2)
    trainable = [np.asarray(sequences[user], dtype=np.int64) for user in users.tolist()]
    inputs = left_pad([sequence[:-1] for sequence in trainable], max_len)
    targets = left_pad([sequence[1:] for sequence in trainable], max_len)
    return TrainingExamples(inputs=inputs, targets=targets, users=users)
