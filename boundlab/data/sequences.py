"""One-user-per-line sequence files and their in-memory form, ``SequenceDataset``.

File format: each line is ``user_id item_id item_id ...`` with the items in chronological
order, separated by whitespace. Ids are 1-based integers. Item id 0 is reserved for padding,
so a dataset with ``n_items`` items scores item ids ``1..n_items``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# The leave-one-out split takes the last item as the test target and the one before it as the
# validation target, so a user needs at least one more item to train on.
MIN_SEQUENCE_LENGTH = 3

_INT64_MAX = int(np.iinfo(np.int64).max)
_INTEGER_TOKEN = re.compile(r"-?[0-9]+")


class DatasetError(ValueError):
    """Invalid dataset content, a checksum mismatch, or an unusable dataset argument."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file that is in none of the searched places."""


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Chronological item sequences, one per user, in file order.

    ``sequences[i]`` is a read-only int64 array with the items of user ``user_ids[i]``.
    ``n_items`` is the size of the catalogue: items are ``1..n_items`` and id 0 is padding.
    ``sha256`` is the checksum of the file the sequences were read from, or None when they
    were built in memory (for example from a raw interaction table).
    """

    name: str
    path: Path | None
    sha256: str | None
    n_items: int
    user_ids: np.ndarray
    sequences: list[np.ndarray]
    n_users: int = field(init=False)

    def __post_init__(self) -> None:
        user_ids = np.asarray(self.user_ids)
        if user_ids.ndim != 1 or user_ids.dtype != np.int64:
            raise DatasetError(
                f"user_ids must be a 1-D int64 array, got shape {user_ids.shape} and dtype "
                f"{user_ids.dtype}; convert it with np.asarray(ids, dtype=np.int64)"
            )
        if len(user_ids) != len(self.sequences):
            raise DatasetError(
                f"{len(user_ids)} user ids for {len(self.sequences)} sequences; "
                "pass one user id per sequence"
            )
        if len(np.unique(user_ids)) != len(user_ids):
            raise DatasetError("user_ids contains duplicates; give every user one id")

        for position, sequence in enumerate(self.sequences):
            if (
                not isinstance(sequence, np.ndarray)
                or sequence.ndim != 1
                or sequence.dtype != np.int64
            ):
                raise DatasetError(
                    f"sequence {position} (user {user_ids[position]}) must be a 1-D int64 "
                    "numpy array; convert it with np.asarray(items, dtype=np.int64)"
                )
            if len(sequence) < MIN_SEQUENCE_LENGTH:
                raise DatasetError(
                    f"user {user_ids[position]} has {len(sequence)} items, fewer than "
                    f"{MIN_SEQUENCE_LENGTH}; drop users that leave no training item"
                )

        if self.sequences:
            items = np.concatenate(self.sequences)
            if items.min() < 1 or items.max() > self.n_items:
                raise DatasetError(
                    f"item ids range over {items.min()}..{items.max()} but must lie in "
                    f"1..n_items={self.n_items}; raise n_items or re-index the items"
                )

        # Freezing the dataclass does not freeze the arrays, so make them read-only as well.
        user_ids.setflags(write=False)
        for sequence in self.sequences:
            sequence.setflags(write=False)
        object.__setattr__(self, "user_ids", user_ids)
        object.__setattr__(self, "n_users", len(self.sequences))

    @property
    def lengths(self) -> np.ndarray:
        """Number of items of each user, as an int64 array of shape (n_users,)."""
        return np.fromiter(map(len, self.sequences), dtype=np.int64, count=self.n_users)

    @property
    def n_interactions(self) -> int:
        """Total number of (user, item) events over all sequences."""
        return int(self.lengths.sum())

    @property
    def mean_length(self) -> float:
        """Mean sequence length, n_interactions / n_users (0.0 for an empty dataset)."""
        if self.n_users == 0:
            return 0.0
        return self.n_interactions / self.n_users

    def limit_users(self, n: int) -> SequenceDataset:
        """Return the first ``n`` users in file order, keeping ``n_items`` unchanged.

        The catalogue stays the same so that scores and item ids match the full dataset.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DatasetError(f"limit_users needs a positive integer, got {n!r}")
        if n >= self.n_users:
            return self
        return SequenceDataset(
            name=self.name,
            path=self.path,
            sha256=self.sha256,
            n_items=self.n_items,
            user_ids=self.user_ids[:n].copy(),
            sequences=list(self.sequences[:n]),
        )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_sequence_file(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    expected_sha256: str | None = None,
) -> SequenceDataset:
    """Read a one-user-per-line file into a ``SequenceDataset``, validating every line.

    Raises ``DatasetError`` naming the file and 1-based line for a non-integer token, an empty
    line, a duplicated user id, an id below 1, or a user with fewer than 3 items. When
    ``expected_sha256`` is given, a file with another checksum raises ``DatasetError`` too.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(
            f"dataset file not found: {path}; check the path or fetch the dataset"
        ) from None
    sha256 = hashlib.sha256(raw).hexdigest()

    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise DatasetError(
            f"{path}: SHA-256 is {sha256} but {expected_sha256} was expected, so the file is "
            "corrupt, truncated or a different version. Download it again, or skip the check "
            "with verify_checksum=False (CLI: --no-verify) if you trust this copy."
        )

    text = _decode_ascii(raw, path)
    lines = text.split("\n")
    if lines[-1] == "":
        # A final newline ends the last line; it does not start an empty one.
        lines.pop()
    if not lines:
        raise DatasetError(
            f"{path}: file is empty; expected lines of `user_id item_id item_id ...`"
        )

    user_ids: list[int] = []
    sequences: list[np.ndarray] = []
    line_of_user: dict[int, int] = {}
    max_item = 0
    for line_number, line in enumerate(lines, start=1):
        tokens = line.split()
        ids = _parse_line(tokens, path, line_number)
        user_id = ids[0]

        if user_id in line_of_user:
            raise DatasetError(
                f"{path}:{line_number}: user id {user_id} already appears on line "
                f"{line_of_user[user_id]}; merge the two lines into one chronological sequence"
            )
        if len(ids) - 1 < MIN_SEQUENCE_LENGTH:
            raise DatasetError(
                f"{path}:{line_number}: user {user_id} has {len(ids) - 1} items, fewer than "
                f"{MIN_SEQUENCE_LENGTH}, so the leave-one-out split leaves no training item; "
                f"remove the line or filter users to at least {MIN_SEQUENCE_LENGTH} items"
            )

        items = np.array(ids[1:], dtype=np.int64)
        line_of_user[user_id] = line_number
        user_ids.append(user_id)
        sequences.append(items)
        max_item = max(max_item, int(items.max()))

    dataset = SequenceDataset(
        name=name if name is not None else path.stem,
        path=path,
        sha256=sha256,
        n_items=max_item,
        user_ids=np.array(user_ids, dtype=np.int64),
        sequences=sequences,
    )
    logger.debug(
        "parsed %s: %d users, %d items, %d interactions",
        path,
        dataset.n_users,
        dataset.n_items,
        dataset.n_interactions,
    )
    return dataset


def _decode_ascii(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as error:
        line_number = raw.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{path}:{line_number}: non-ASCII byte {raw[error.start : error.start + 1]!r}; "
            "the file must contain only decimal ids separated by spaces"
        ) from None


def _parse_line(tokens: Sequence[str], path: Path, line_number: int) -> list[int]:
    """Convert one line's tokens to ints, raising DatasetError on anything but ids >= 1."""
    if not tokens:
        raise DatasetError(
            f"{path}:{line_number}: empty line; every line must read `user_id item_id ...`, "
            "so remove the empty line"
        )

    # Fast path: plain ASCII digits only. str.isdigit alone would accept other scripts' digits.
    joined = "".join(tokens)
    if joined.isascii() and joined.isdigit():
        ids = [int(token) for token in tokens]
        bad = next((value for value in ids if value < 1 or value > _INT64_MAX), None)
        if bad is None:
            return ids

    # Slow path: find the first invalid token and report what is wrong with it.
    for position, token in enumerate(tokens):
        kind = "user id" if position == 0 else "item id"
        if _INTEGER_TOKEN.fullmatch(token) is None:
            raise DatasetError(
                f"{path}:{line_number}: {kind} {token!r} is not an integer; ids must be "
                "decimal integers separated by whitespace"
            )
        value = int(token)
        if value < 1:
            raise DatasetError(
                f"{path}:{line_number}: {kind} {value} is below 1; ids are 1-based "
                "(item id 0 is reserved for padding), so shift the ids by one"
            )
        if value > _INT64_MAX:
            raise DatasetError(
                f"{path}:{line_number}: {kind} {value} does not fit in int64; re-index the ids"
            )
    raise AssertionError("unreachable: a token failed the fast path but passed every check")


def write_sequence_file(dataset: SequenceDataset, path: str | os.PathLike[str]) -> str:
    """Write ``dataset`` as one-user-per-line text, atomically, and return the file's SHA-256.

    The text goes to a temporary file in the target directory, which then replaces ``path``,
    so readers never see a half-written file.
    """
    path = Path(path)
    lines = [
        f"{user_id} {' '.join(map(str, sequence.tolist()))}\n"
        for user_id, sequence in zip(dataset.user_ids.tolist(), dataset.sequences, strict=True)
    ]
    data = "".join(lines).encode("ascii")
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates the file as 0600; data files should be readable by others.
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
