"""Raw interaction tables (CSV, TSV, MovieLens ``ratings.dat``) turned into sequence datasets.

The steps: read (user, item, timestamp) rows, keep the iterated k-core, sort each user's rows
by timestamp, and re-index users and items to contiguous 1-based ids.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from boundlab.data.sequences import (
    MIN_SEQUENCE_LENGTH,
    DatasetError,
    DatasetNotFoundError,
    SequenceDataset,
    write_sequence_file,
)

logger = logging.getLogger(__name__)

TableFormat = Literal["auto", "csv", "tsv", "movielens"]
TABLE_FORMATS: tuple[str, ...] = ("auto", "csv", "tsv", "movielens")

# Columns of the table that read_interactions returns, whatever the names in the file.
USER, ITEM, TIMESTAMP, LINE = "user", "item", "timestamp", "line"

_MOVIELENS_COLUMNS = ("user", "item", "rating", "timestamp")


def _detect_format(path: Path, first_line: str) -> str:
    if "::" in first_line or path.suffix == ".dat":
        return "movielens"
    if path.suffix == ".tsv" or ("\t" in first_line and "," not in first_line):
        return "tsv"
    return "csv"


def read_interactions(
    path: str | os.PathLike[str],
    *,
    file_format: TableFormat = "auto",
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
) -> pd.DataFrame:
    """Read a raw interaction table into columns user, item (str), timestamp (int64) and line.

    With ``file_format`` "csv" or "tsv", the file needs a header row with the named columns.
    "movielens" reads headerless ``user::item::rating::timestamp`` lines. "auto" picks a
    format from the file suffix and the first line. ``line`` is each row's 1-based line
    number, used in error messages. Timestamps may be numbers or ISO-8601 strings, which are
    converted to nanoseconds since the epoch.
    """
    path = Path(path)
    if file_format not in TABLE_FORMATS:
        raise DatasetError(
            f"unknown table format {file_format!r}; choose one of {', '.join(TABLE_FORMATS)}"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"interaction table not found: {path}; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = raw.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{path}:{line_number}: invalid UTF-8; re-encode the file as UTF-8"
        ) from None

    first_line = text.split("\n", 1)[0]
    if file_format == "auto":
        file_format = _detect_format(path, first_line)

    if file_format == "movielens":
        table = _read_movielens(text, path)
        first_data_line = 1
    else:
        table = _read_delimited(text, path, file_format, user_col, item_col, time_col)
        first_data_line = 2

    # With skip_blank_lines=False every physical line is one row, so row i is line i + offset.
    # NOTE: a quoted field spanning several lines would shift the reported line numbers.
    table[LINE] = np.arange(first_data_line, first_data_line + len(table), dtype=np.int64)
    _reject_missing_values(table, path)
    table[TIMESTAMP] = _timestamps_as_int64(table, path)
    logger.debug("read %d interactions from %s (%s)", len(table), path, file_format)
    return table[[USER, ITEM, TIMESTAMP, LINE]]


def _read_movielens(text: str, path: Path) -> pd.DataFrame:
    # The C parser takes single-character separators only, so turn "::" into tabs first.
    buffer = io.StringIO(text.replace("::", "\t"))
    try:
        table = pd.read_csv(
            buffer,
            sep="\t",
            header=None,
            names=list(_MOVIELENS_COLUMNS),
            dtype={"user": str, "item": str},
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
        )
    except pd.errors.EmptyDataError:
        raise DatasetError(
            f"{path}: file is empty; expected user::item::rating::timestamp lines"
        ) from None
    except pd.errors.ParserError as error:
        raise DatasetError(
            f"{path}: {error}; every line must read user::item::rating::timestamp"
        ) from None
    return table[[USER, ITEM, TIMESTAMP]]


def _read_delimited(
    text: str, path: Path, file_format: str, user_col: str, item_col: str, time_col: str
) -> pd.DataFrame:
    separator = "\t" if file_format == "tsv" else ","
    try:
        table = pd.read_csv(
            io.StringIO(text),
            sep=separator,
            dtype={user_col: str, item_col: str},
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        raise DatasetError(
            f"{path}: file is empty; expected a header row and interactions"
        ) from None
    except pd.errors.ParserError as error:
        raise DatasetError(f"{path}: {error}; fix the malformed row") from None

    missing = [column for column in (user_col, item_col, time_col) if column not in table.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))}; the header has "
            f"{', '.join(map(repr, table.columns))}. Name the columns with user_col, item_col "
            "and time_col (CLI: --user-col, --item-col, --time-col)."
        )
    # A fresh frame, because renaming could collide with other columns called "user" or "line".
    return pd.DataFrame({USER: table[user_col], ITEM: table[item_col], TIMESTAMP: table[time_col]})


def _reject_missing_values(table: pd.DataFrame, path: Path) -> None:
    for column in (USER, ITEM, TIMESTAMP):
        blank = table[column].isna().to_numpy()
        if blank.any():
            line_number = int(table[LINE].to_numpy()[blank.argmax()])
            raise DatasetError(
                f"{path}:{line_number}: no {column} value (empty line or missing field); "
                "remove the line or fill in the value"
            )


def _timestamps_as_int64(table: pd.DataFrame, path: Path) -> np.ndarray:
    column = table[TIMESTAMP]
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)

    # Floats, numeric strings and ISO-8601 strings: try numbers first, then dates.
    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any():
        if (numeric != np.floor(numeric)).any():
            # Fractional timestamps keep their order only if not truncated, so rank them.
            return numeric.rank(method="dense").to_numpy(dtype=np.int64)
        return numeric.to_numpy(dtype=np.int64)

    dates = pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")
    lines = table[LINE].to_numpy()
    unreadable = (numeric.isna() & dates.isna()).to_numpy()
    if unreadable.any():
        position = int(unreadable.argmax())
        raise DatasetError(
            f"{path}:{lines[position]}: timestamp {column.iloc[position]!r} is neither a number "
            "nor an ISO-8601 date; fix the value or choose another column with time_col "
            "(--time-col)"
        )
    numbers_among_dates = numeric.notna().to_numpy()
    if numbers_among_dates.any():
        position = int(numbers_among_dates.argmax())
        raise DatasetError(
            f"{path}:{lines[position]}: timestamp {column.iloc[position]!r} is a number but other "
            "rows contain dates; write every timestamp in one form"
        )
    return dates.dt.as_unit("ns").astype("int64").to_numpy()


def kcore_filter(interactions: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Keep the rows whose user and item both have at least ``k`` rows, repeating until stable.

    Dropping an item can push a user below ``k`` and the other way round, so one pass is not
    enough. Each row counts once, including repeated (user, item) pairs. Row order is kept.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DatasetError(f"k must be a positive integer, got {k!r}")

    user_codes, _ = pd.factorize(interactions[USER])
    item_codes, _ = pd.factorize(interactions[ITEM])
    keep = np.ones(len(interactions), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        user_counts = np.bincount(user_codes[keep], minlength=user_codes.max(initial=-1) + 1)
        item_counts = np.bincount(item_codes[keep], minlength=item_codes.max(initial=-1) + 1)
        still_kept = keep & (user_counts[user_codes] >= k) & (item_counts[item_codes] >= k)
        if still_kept.sum() == keep.sum():
            break
        keep = still_kept

    logger.debug("%d-core kept %d of %d rows after %d rounds", k, keep.sum(), len(keep), rounds)
    return interactions[keep]


def sequences_from_interactions(interactions: pd.DataFrame, *, name: str) -> SequenceDataset:
    """Order each user's rows by timestamp and re-index users and items to 1-based ids.

    Sorting is stable, so rows with equal timestamps keep their order in the table. Users are
    numbered in order of first appearance in the table, items in order of first appearance in
    the sorted sequences (user 1's items first).
    """
    if len(interactions) == 0:
        raise DatasetError(f"{name}: no interactions left; lower k or check the input table")

    user_codes, _ = pd.factorize(interactions[USER])
    timestamps = interactions[TIMESTAMP].to_numpy(dtype=np.int64)

    # Two stable sorts: by time, then by user, so equal timestamps keep their table order.
    by_time = np.argsort(timestamps, kind="stable")
    order = by_time[np.argsort(user_codes[by_time], kind="stable")]

    items_in_order = interactions[ITEM].to_numpy()[order]
    item_codes, _ = pd.factorize(items_in_order)
    item_ids = item_codes.astype(np.int64) + 1

    counts = np.bincount(user_codes)
    short = np.flatnonzero(counts < MIN_SEQUENCE_LENGTH)
    if len(short):
        first_short = interactions[USER].to_numpy()[user_codes == short[0]][0]
        raise DatasetError(
            f"{name}: user {first_short!r} has {counts[short[0]]} interactions, fewer than "
            f"{MIN_SEQUENCE_LENGTH}; use k >= {MIN_SEQUENCE_LENGTH}"
        )

    sequences = np.split(item_ids, np.cumsum(counts)[:-1])
    return SequenceDataset(
        name=name,
        path=None,
        sha256=None,
        n_items=int(item_ids.max()),
        user_ids=np.arange(1, len(counts) + 1, dtype=np.int64),
        sequences=sequences,
    )


def load_interactions_dataset(
    path: str | os.PathLike[str],
    *,
    k: int = 5,
    file_format: TableFormat = "auto",
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    name: str | None = None,
    output: str | os.PathLike[str] | None = None,
) -> SequenceDataset:
    """Read a raw interaction table, keep its ``k``-core and return it as a ``SequenceDataset``.

    With ``output``, the sequences are also written there (atomically) in one-user-per-line
    format, and the returned dataset's ``path`` and ``sha256`` describe that file.
    """
    path = Path(path)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < MIN_SEQUENCE_LENGTH:
        raise DatasetError(
            f"k must be an integer >= {MIN_SEQUENCE_LENGTH} so that every user keeps a training "
            f"item after the leave-one-out split, got {k!r}"
        )

    table = read_interactions(
        path, file_format=file_format, user_col=user_col, item_col=item_col, time_col=time_col
    )
    if len(table) == 0:
        raise DatasetError(f"{path}: the table contains no interactions; check the file")
    filtered = kcore_filter(table, k)
    if len(filtered) == 0:
        raise DatasetError(
            f"{path}: no interactions left after {k}-core filtering of {len(table)} rows; "
            "lower k or check the user and item columns"
        )
    dataset = sequences_from_interactions(filtered, name=name if name is not None else path.stem)
    logger.info(
        "%s: %d-core kept %d users, %d items, %d of %d interactions",
        path,
        k,
        dataset.n_users,
        dataset.n_items,
        dataset.n_interactions,
        len(table),
    )

    if output is None:
        return dataset
    output = Path(output)
    sha256 = write_sequence_file(dataset, output)
    logger.info("wrote %s (sha256 %s)", output, sha256)
    return SequenceDataset(
        name=dataset.name,
        path=output,
        sha256=sha256,
        n_items=dataset.n_items,
        user_ids=dataset.user_ids,
        sequences=dataset.sequences,
    )
