"""Leave-one-out split and the items excluded from each user's ranking at evaluation time.

Every user's last item is the test target and the second-to-last the validation target; the
rest is training data. Candidate item id ``v`` is score column ``v - 1`` (id 0 is padding and
has no column), which is the convention of ``boundlab.ranking``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from boundlab.data.sequences import SequenceDataset


class HistoryPolicy(str, Enum):
    """Policy for removing a user's input-history items from that user's ranking.

    ``EXCLUDE_SEEN`` removes every item in the history except the target itself, the usual
    protocol for next-item evaluation on these datasets. ``NONE`` ranks the whole catalogue.
    """

    EXCLUDE_SEEN = "exclude-seen"
    NONE = "none"


DEFAULT_HISTORY_POLICY = HistoryPolicy.EXCLUDE_SEEN


def _history_policy(policy: HistoryPolicy | str) -> HistoryPolicy:
    try:
        return HistoryPolicy(policy)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in HistoryPolicy)
        raise ValueError(f"unknown history policy {policy!r}; choose one of {choices}") from None


def exclusion_index(
    histories: Sequence[np.ndarray],
    targets: Sequence[int] | np.ndarray,
    policy: HistoryPolicy | str = DEFAULT_HISTORY_POLICY,
) -> torch.Tensor:
    """Build the (B, L) LongTensor of 0-based score columns to exclude, padded with -1.

    Row ``b`` lists column ``v - 1`` once for each distinct item ``v`` in ``histories[b]``,
    in increasing order, and never the column of ``targets[b]``: a target that the user also
    interacted with earlier (a repeated item) stays rankable. ``L`` is the longest row, and
    it is 0 for policy "none", which excludes nothing.
    """
    policy = _history_policy(policy)
    batch_size = len(histories)
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != (batch_size,):
        raise ValueError(
            f"targets must have shape ({batch_size},) to match {batch_size} histories, "
            f"got {targets.shape}"
        )
    if batch_size and targets.min() < 1:
        raise ValueError(f"target item ids must be >= 1, got {int(targets.min())}")
    if policy is HistoryPolicy.NONE or batch_size == 0:
        return torch.empty((batch_size, 0), dtype=torch.long)

    lengths = np.fromiter(map(len, histories), dtype=np.int64, count=batch_size)
    if lengths.sum() == 0:
        return torch.empty((batch_size, 0), dtype=torch.long)
    items = np.concatenate([np.asarray(history, dtype=np.int64) for history in histories])
    if items.min() < 1:
        raise ValueError(
            f"history item ids must be >= 1 (0 is padding), got {int(items.min())}; "
            "strip padding before building the exclusion index"
        )
    rows = np.repeat(np.arange(batch_size, dtype=np.int64), lengths)

    keep = items != targets[rows]
    rows = rows[keep]
    items = items[keep]

    # One sort both removes repeated items within a row and orders rows, via a single key.
    stride = int(max(items.max(initial=0), targets.max())) + 1
    keys = np.unique(rows * stride + items)
    rows = keys // stride
    columns = keys % stride - 1

    counts = np.bincount(rows, minlength=batch_size)
    width = int(counts.max(initial=0))
    row_starts = np.cumsum(counts) - counts
    offsets = np.arange(len(keys), dtype=np.int64) - np.repeat(row_starts, counts)
    index = np.full((batch_size, width), -1, dtype=np.int64)
    index[rows, offsets] = columns
    return torch.from_numpy(index)


def exclusion_mask(
    histories: Sequence[np.ndarray],
    targets: Sequence[int] | np.ndarray,
    n_items: int,
    policy: HistoryPolicy | str = DEFAULT_HISTORY_POLICY,
) -> torch.Tensor:
    """Build the boolean (B, n_items) mask that is True at the columns ``exclusion_index`` lists."""
    index = exclusion_index(histories, targets, policy)
    if index.numel() and int(index.max()) >= n_items:
        raise ValueError(
            f"item id {int(index.max()) + 1} exceeds n_items={n_items}; pass the catalogue size"
        )
    mask = torch.zeros((index.shape[0], n_items), dtype=torch.bool)
    rows, positions = torch.nonzero(index >= 0, as_tuple=True)
    mask[rows, index[rows, positions]] = True
    return mask


@dataclass(frozen=True, eq=False)
class EvaluationSet:
    """Input histories and held-out targets of one evaluation stage (validation or test).

    ``histories[i]`` is a read-only view of user ``i``'s items before ``targets[i]``.
    """

    histories: list[np.ndarray]
    targets: np.ndarray
    n_items: int

    def __len__(self) -> int:
        return len(self.histories)

    def _select(
        self, users: slice | Sequence[int] | np.ndarray | None
    ) -> tuple[list[np.ndarray], np.ndarray]:
        if users is None:
            return self.histories, self.targets
        if isinstance(users, slice):
            return self.histories[users], self.targets[users]
        positions = np.asarray(users, dtype=np.int64)
        if positions.ndim != 1:
            raise ValueError(
                f"users must be a 1-D sequence of positions, got shape {positions.shape}"
            )
        return [self.histories[position] for position in positions.tolist()], self.targets[
            positions
        ]

    def target_columns(
        self, users: slice | Sequence[int] | np.ndarray | None = None
    ) -> torch.Tensor:
        """Return the 0-based score columns (item id - 1) of the targets of the selected users.

        ``users`` selects by position in file order (a slice or integer array); None means all.
        """
        _, targets = self._select(users)
        return torch.from_numpy(targets - 1)

    def exclusion_index(
        self,
        users: slice | Sequence[int] | np.ndarray | None = None,
        policy: HistoryPolicy | str = DEFAULT_HISTORY_POLICY,
    ) -> torch.Tensor:
        """Build ``exclusion_index`` for the users at ``users`` (file-order positions; None: all)."""
        histories, targets = self._select(users)
        return exclusion_index(histories, targets, policy)


@dataclass(frozen=True, eq=False)
class LeaveOneOutSplit:
    """Leave-one-out split of a ``SequenceDataset``.

    For a user with items ``s[0..n-1]``, ``train`` is ``s[:-2]``. Validation ranks ``s[-2]``
    given ``s[:-2]``. Test ranks ``s[-1]`` given ``s[:-1]``, so the test history includes the
    validation item. All arrays are views of the dataset's sequences.
    """

    dataset: SequenceDataset
    train: list[np.ndarray]
    valid: EvaluationSet
    test: EvaluationSet

    @classmethod
    def from_dataset(cls, dataset: SequenceDataset) -> LeaveOneOutSplit:
        """Split every user of ``dataset``; SequenceDataset guarantees at least 3 items each."""
        train = [sequence[:-2] for sequence in dataset.sequences]
        valid_targets = np.array([sequence[-2] for sequence in dataset.sequences], dtype=np.int64)
        test_histories = [sequence[:-1] for sequence in dataset.sequences]
        test_targets = np.array([sequence[-1] for sequence in dataset.sequences], dtype=np.int64)
        valid_targets.setflags(write=False)
        test_targets.setflags(write=False)
        return cls(
            dataset=dataset,
            train=train,
            valid=EvaluationSet(train, valid_targets, dataset.n_items),
            test=EvaluationSet(test_histories, test_targets, dataset.n_items),
        )

    @property
    def n_users(self) -> int:
        """Number of users; each contributes one validation and one test target."""
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        """Catalogue size; score matrices have this many columns."""
        return self.dataset.n_items

    @property
    def n_train_interactions(self) -> int:
        """Number of training items over all users, n_interactions - 2 * n_users."""
        return int(sum(map(len, self.train)))


def leave_one_out(dataset: SequenceDataset) -> LeaveOneOutSplit:
    """Split ``dataset`` into training sequences, validation targets and test targets."""
    return LeaveOneOutSplit.from_dataset(dataset)
