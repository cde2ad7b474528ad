"""Tests for the dataset layer: parsing, registry, splits, exclusion, raw tables, fetch and CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from boundlab import cli
from boundlab.data import (
    DATA_ENV_VAR,
    REGISTRY,
    DatasetError,
    DatasetInfo,
    DatasetNotFoundError,
    DownloadError,
    HistoryPolicy,
    SequenceDataset,
    data_dir_candidates,
    dataset_summary,
    download_file,
    exclusion_index,
    exclusion_mask,
    fetch_dataset,
    kcore_filter,
    leave_one_out,
    limit_users,
    load_dataset,
    load_interactions_dataset,
    locate_dataset,
    parse_sequence_file,
    read_interactions,
    write_sequence_file,
)
from boundlab.data import fetch as fetch_module
from boundlab.data import registry as registry_module
from boundlab.ranking import target_ranks

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY_ROOT.parent / "shared" / "data"

# Four users; user 7 repeats item 2, and item 6 appears only in user 9's sequence.
TINY_LINES = [
    "3 1 2 3 4",
    "7 2 5 2",
    "1 4 3 1 2 5",
    "9 6 1 4",
]


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    return write_text(path, "".join(line + "\n" for line in lines))


@pytest.fixture
def tiny_path(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "tiny.txt", TINY_LINES)


@pytest.fixture
def data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Isolate the search path: no env variable, an empty ./data and an empty shared folder."""
    working = tmp_path / "work"
    shared = tmp_path / "shared-data"
    working.mkdir()
    shared.mkdir()
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.chdir(working)
    monkeypatch.setattr(registry_module, "SHARED_DATA_DIR", shared)
    return {"cwd_data": working / "data", "shared": shared, "env": tmp_path / "env-data"}


def fake_registry_entry(monkeypatch: pytest.MonkeyPatch, name: str, content: bytes) -> DatasetInfo:
    """Register ``content`` as the expected file of ``name`` so that checksums can pass offline."""
    original = REGISTRY[name]
    info = dataclasses.replace(original, sha256=hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(REGISTRY, name, info)
    return info


TINY_BYTES = "".join(line + "\n" for line in TINY_LINES).encode("ascii")


# Parsing


def test_parse_tiny_counts(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    assert dataset.name == "tiny"
    assert dataset.path == tiny_path
    assert dataset.n_users == 4
    assert dataset.n_items == 6
    assert dataset.n_interactions == 15
    assert dataset.mean_length == pytest.approx(3.75)
    assert dataset.user_ids.tolist() == [3, 7, 1, 9]
    assert dataset.sequences[2].tolist() == [4, 3, 1, 2, 5]
    assert all(sequence.dtype == np.int64 for sequence in dataset.sequences)


def test_parse_records_file_sha256(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    assert dataset.sha256 == hashlib.sha256(TINY_BYTES).hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        "1 1 2 3",
        "1 1 2 3\n",
        "1 1 2 3\r\n2 3 2 1\r\n",
        "1\t1  2 3\n",
    ],
    ids=["no-final-newline", "final-newline", "crlf", "tabs-and-spaces"],
)
def test_parse_accepts_whitespace_variants(tmp_path: Path, text: str) -> None:
    dataset = parse_sequence_file(write_text(tmp_path / "ok.txt", text))

    assert dataset.sequences[0].tolist() == [1, 2, 3]


BAD_INPUTS = [
    # (name, lines, line number of the error, fragment of the message)
    ("non-integer", ["1 1 2 3", "2 1 x 3"], 2, "'x' is not an integer"),
    ("float", ["1 1 2 3", "2 1 2.5 3"], 2, "'2.5' is not an integer"),
    ("non-integer-user", ["u1 1 2 3"], 1, "user id 'u1' is not an integer"),
    ("empty-line", ["1 1 2 3", "", "2 1 2 3"], 2, "empty line"),
    ("blank-line", ["1 1 2 3", "2 1 2 3", "   "], 3, "empty line"),
    ("duplicate-user", ["5 1 2 3", "6 1 2 3", "5 2 3 1"], 3, "already appears on line 1"),
    ("item-zero", ["1 1 2 3", "2 1 0 3"], 2, "item id 0 is below 1"),
    ("item-negative", ["1 1 -4 3"], 1, "item id -4 is below 1"),
    ("user-zero", ["0 1 2 3"], 1, "user id 0 is below 1"),
    ("two-items", ["1 1 2 3", "2 1 2"], 2, "has 2 items, fewer than 3"),
    ("user-only", ["1 1 2 3", "2"], 2, "has 0 items"),
    ("arabic-digit", ["1 1 2 3", "2 1 \u0663 3"], 2, "non-ASCII"),
    ("too-large", ["1 1 2 99999999999999999999"], 1, "does not fit in int64"),
]


@pytest.mark.parametrize(
    ("lines", "line_number", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_parse_rejects_bad_input(
    tmp_path: Path, lines: list[str], line_number: int, fragment: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    with pytest.raises(DatasetError) as caught:
        parse_sequence_file(path)

    message = str(caught.value)
    assert f"{path}:{line_number}:" in message
    assert fragment in message


def test_dataset_error_is_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


def test_parse_rejects_empty_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "empty.txt", "")

    with pytest.raises(DatasetError, match="file is empty"):
        parse_sequence_file(path)


def test_parse_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        parse_sequence_file(tmp_path / "absent.txt")


def test_write_then_parse_round_trip(tiny_path: Path, tmp_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    sha256 = write_sequence_file(dataset, tmp_path / "copy" / "tiny.txt")
    copy = parse_sequence_file(tmp_path / "copy" / "tiny.txt")

    assert sha256 == dataset.sha256
    assert copy.user_ids.tolist() == dataset.user_ids.tolist()
    assert [s.tolist() for s in copy.sequences] == [s.tolist() for s in dataset.sequences]
    assert sorted(os.listdir(tmp_path / "copy")) == ["tiny.txt"]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=1, max_value=10**12), min_size=3, max_size=12),
        min_size=1,
        max_size=20,
    )
)
def test_round_trip_property(sequences: list[list[int]]) -> None:
    dataset = SequenceDataset(
        name="generated",
        path=None,
        sha256=None,
        n_items=max(max(sequence) for sequence in sequences),
        user_ids=np.arange(1, len(sequences) + 1, dtype=np.int64),
        sequences=[np.array(sequence, dtype=np.int64) for sequence in sequences],
    )
    buffer = io.BytesIO()
    for user_id, sequence in zip(dataset.user_ids.tolist(), sequences, strict=True):
        buffer.write(f"{user_id} {' '.join(map(str, sequence))}\n".encode())

    digest = hashlib.sha256(buffer.getvalue()).hexdigest()

    # Hypothesis reruns the body many times, so it cannot share pytest's tmp_path fixture.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.txt"
        assert write_sequence_file(dataset, path) == digest
        parsed = parse_sequence_file(path)

    assert [s.tolist() for s in parsed.sequences] == sequences


# SequenceDataset


def test_dataset_is_frozen(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.n_items = 10  # type: ignore[misc]


def test_dataset_arrays_are_read_only(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    with pytest.raises(ValueError, match="read-only"):
        dataset.sequences[0][0] = 99


def test_dataset_rejects_items_above_n_items() -> None:
    with pytest.raises(DatasetError, match="n_items=3"):
        SequenceDataset("x", None, None, 3, np.array([1], dtype=np.int64), [np.array([1, 2, 4])])


def test_dataset_rejects_short_sequence() -> None:
    with pytest.raises(DatasetError, match="fewer than 3"):
        SequenceDataset("x", None, None, 3, np.array([1], dtype=np.int64), [np.array([1, 2])])


def test_dataset_rejects_duplicate_user_ids() -> None:
    sequences = [np.array([1, 2, 3]), np.array([3, 2, 1])]

    with pytest.raises(DatasetError, match="duplicates"):
        SequenceDataset("x", None, None, 3, np.array([4, 4], dtype=np.int64), sequences)


def test_limit_users_keeps_first_users(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    limited = dataset.limit_users(2)

    assert limited.user_ids.tolist() == [3, 7]
    assert [s.tolist() for s in limited.sequences] == [[1, 2, 3, 4], [2, 5, 2]]
    assert limited.n_users == 2
    assert limited.n_items == dataset.n_items


def test_limit_users_beyond_size_returns_all(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)

    assert limit_users(dataset, 100) is dataset


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_limit_users_rejects_invalid_n(tiny_path: Path, n: object) -> None:
    dataset = parse_sequence_file(tiny_path)

    with pytest.raises(DatasetError, match="positive integer"):
        dataset.limit_users(n)  # type: ignore[arg-type]


# Leave-one-out split


def test_split_train_sequences(tiny_path: Path) -> None:
    split = leave_one_out(parse_sequence_file(tiny_path))

    assert [s.tolist() for s in split.train] == [[1, 2], [2], [4, 3, 1], [6]]
    assert split.n_train_interactions == 7


def test_split_validation_stage(tiny_path: Path) -> None:
    split = leave_one_out(parse_sequence_file(tiny_path))

    assert [h.tolist() for h in split.valid.histories] == [[1, 2], [2], [4, 3, 1], [6]]
    assert split.valid.targets.tolist() == [3, 5, 2, 1]


def test_split_test_stage(tiny_path: Path) -> None:
    split = leave_one_out(parse_sequence_file(tiny_path))

    assert [h.tolist() for h in split.test.histories] == [[1, 2, 3], [2, 5], [4, 3, 1, 2], [6, 1]]
    assert split.test.targets.tolist() == [4, 2, 5, 4]


def test_split_target_columns(tiny_path: Path) -> None:
    split = leave_one_out(parse_sequence_file(tiny_path))

    columns = split.test.target_columns()

    assert columns.dtype == torch.long
    assert columns.tolist() == [3, 1, 4, 3]


def test_split_interaction_identity(tiny_path: Path) -> None:
    dataset = parse_sequence_file(tiny_path)
    split = leave_one_out(dataset)

    assert split.n_train_interactions == dataset.n_interactions - 2 * dataset.n_users
    assert len(split.valid) == dataset.n_users
    assert len(split.test) == dataset.n_users


# Exclusion of seen items


def test_exclusion_keeps_repeated_target() -> None:
    # The target 5 also occurs twice in the history; its column 4 must stay rankable.
    index = exclusion_index([np.array([5, 3, 5, 7])], [5])

    assert index.tolist() == [[2, 6]]


def test_exclusion_pads_with_minus_one() -> None:
    index = exclusion_index(
        [np.array([1, 2, 3]), np.array([4]), np.array([], dtype=np.int64)], [9, 9, 9]
    )

    assert index.dtype == torch.long
    assert index.tolist() == [[0, 1, 2], [3, -1, -1], [-1, -1, -1]]


def test_exclusion_deduplicates_history() -> None:
    index = exclusion_index([np.array([4, 4, 2, 4])], [1])

    assert index.tolist() == [[1, 3]]


def test_exclusion_policy_none_is_empty() -> None:
    index = exclusion_index([np.array([1, 2]), np.array([3])], [3, 1], policy="none")

    assert index.shape == (2, 0)


def test_exclusion_accepts_enum_policy() -> None:
    index = exclusion_index([np.array([1, 2])], [3], policy=HistoryPolicy.EXCLUDE_SEEN)

    assert index.tolist() == [[0, 1]]


def test_exclusion_rejects_unknown_policy() -> None:
    with pytest.raises(ValueError, match="'exclude-seen', 'none'"):
        exclusion_index([np.array([1])], [2], policy="seen")


def test_exclusion_rejects_target_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        exclusion_index([np.array([1]), np.array([2])], [3])


def test_exclusion_rejects_padding_item() -> None:
    with pytest.raises(ValueError, match="0 is padding"):
        exclusion_index([np.array([0, 1])], [2])


def reference_exclusion(histories: list[list[int]], targets: list[int]) -> list[list[int]]:
    """Per-row Python version of exclusion_index without padding."""
    return [
        sorted({item - 1 for item in history if item != target})
        for history, target in zip(histories, targets, strict=True)
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.integers(1, 15), max_size=12), st.integers(1, 15)),
        min_size=1,
        max_size=10,
    )
)
def test_exclusion_matches_reference(rows: list[tuple[list[int], int]]) -> None:
    histories = [np.array(history, dtype=np.int64) for history, _ in rows]
    targets = [target for _, target in rows]

    index = exclusion_index(histories, targets)

    unpadded = [[column for column in row if column >= 0] for row in index.tolist()]
    assert unpadded == reference_exclusion([h for h, _ in rows], targets)


def test_exclusion_mask_matches_index() -> None:
    histories = [np.array([5, 3, 5, 7]), np.array([1])]

    mask = exclusion_mask(histories, [5, 2], n_items=8)

    assert mask.shape == (2, 8)
    assert torch.nonzero(mask).tolist() == [[0, 2], [0, 6], [1, 0]]


def test_exclusion_index_and_mask_rank_alike(tiny_path: Path) -> None:
    split = leave_one_out(parse_sequence_file(tiny_path))
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(len(split.test), split.n_items, generator=generator)
    targets = split.test.target_columns()

    by_index = target_ranks(scores, targets, exclude=split.test.exclusion_index())
    by_mask = target_ranks(
        scores,
        targets,
        exclude=exclusion_mask(split.test.histories, split.test.targets, split.n_items),
    )

    assert torch.equal(by_index, by_mask)


def test_exclusion_leaves_target_rank_one() -> None:
    # User 7's test target 2 is also in its history; excluding seen items must not drop it.
    scores = torch.tensor([[0.0, 1.0, 0.0, 0.0, 5.0, 0.0]])
    index = exclusion_index([np.array([2, 5])], [2])

    rank = target_ranks(scores, torch.tensor([1]), exclude=index)

    assert rank.tolist() == [1]


def test_evaluation_set_selects_users(tiny_path: Path) -> None:
    split = leave_one_out(parse_sequence_file(tiny_path))

    by_slice = split.test.exclusion_index(slice(1, 3))
    by_positions = split.test.exclusion_index(np.array([1, 2]))

    assert by_slice.tolist() == [[4, -1, -1, -1], [0, 1, 2, 3]]
    assert torch.equal(by_slice, by_positions)


# Registry and data folders


def test_registry_names_and_files() -> None:
    assert {name: info.filename for name, info in REGISTRY.items()} == {
        "beauty": "Beauty.txt",
        "sports": "Sports_and_Outdoors.txt",
        "toys": "Toys_and_Games.txt",
        "yelp": "Yelp.txt",
    }


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_is_well_formed(name: str) -> None:
    info = REGISTRY[name]

    assert len(info.sha256) == 64
    assert int(info.sha256, 16) >= 0
    assert info.url.startswith("https://raw.githubusercontent.com/salesforce/ICLRec/")
    assert info.url.endswith("/data/" + info.filename)


def test_registry_checksums_match_sums_file() -> None:
    sums = SHARED_DATA / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"no checksum list at {sums}")
    expected = dict(
        reversed(line.split()) for line in sums.read_text().splitlines() if line.strip()
    )

    assert {info.filename: info.sha256 for info in REGISTRY.values()} == expected


def test_candidates_explicit_dir_only(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dirs["env"]))

    assert data_dir_candidates("/some/where") == [Path("/some/where")]


def test_candidates_order_with_env(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dirs["env"]))

    assert data_dir_candidates() == [data_dirs["env"], data_dirs["cwd_data"], data_dirs["shared"]]


def test_candidates_order_without_env(data_dirs: dict[str, Path]) -> None:
    assert data_dir_candidates() == [data_dirs["cwd_data"], data_dirs["shared"]]


def test_candidates_drop_duplicates(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dirs["shared"]))

    assert data_dir_candidates() == [data_dirs["shared"], data_dirs["cwd_data"]]


def test_shared_fallback_is_beside_repository() -> None:
    assert registry_module.SHARED_DATA_DIR == SHARED_DATA


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (("env", "cwd_data", "shared"), "env"),
        (("cwd_data", "shared"), "cwd_data"),
        (("shared",), "shared"),
    ],
)
def test_locate_takes_first_folder_with_file(
    data_dirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    present: tuple[str, ...],
    expected: str,
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dirs["env"]))
    for key in present:
        write_lines(data_dirs[key] / "Beauty.txt", TINY_LINES)

    assert locate_dataset("beauty") == data_dirs[expected] / "Beauty.txt"


def test_locate_explicit_dir_ignores_others(data_dirs: dict[str, Path], tmp_path: Path) -> None:
    write_lines(data_dirs["shared"] / "Beauty.txt", TINY_LINES)

    with pytest.raises(DatasetNotFoundError):
        locate_dataset("beauty", tmp_path / "explicit")


def test_missing_dataset_error_lists_places(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dirs["env"]))

    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("beauty")

    message = str(caught.value)
    for key in ("env", "cwd_data", "shared"):
        assert str(data_dirs[key] / "Beauty.txt") in message
    assert "boundlab data fetch beauty" in message
    assert REGISTRY["beauty"].url in message


def test_missing_dataset_is_file_not_found(data_dirs: dict[str, Path]) -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset("toys")


def test_load_by_name_is_case_insensitive(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lines(data_dirs["cwd_data"] / "Beauty.txt", TINY_LINES)
    fake_registry_entry(monkeypatch, "beauty", TINY_BYTES)

    dataset = load_dataset("Beauty")

    assert dataset.name == "beauty"
    assert dataset.n_users == 4


def test_load_rejects_checksum_mismatch(data_dirs: dict[str, Path]) -> None:
    path = write_lines(data_dirs["cwd_data"] / "Beauty.txt", TINY_LINES)

    with pytest.raises(DatasetError) as caught:
        load_dataset("beauty")

    message = str(caught.value)
    assert str(path) in message
    assert REGISTRY["beauty"].sha256 in message
    assert "--no-verify" in message


def test_load_checksum_override(data_dirs: dict[str, Path]) -> None:
    write_lines(data_dirs["cwd_data"] / "Beauty.txt", TINY_LINES)

    dataset = load_dataset("beauty", verify_checksum=False)

    assert dataset.n_users == 4
    assert dataset.sha256 == hashlib.sha256(TINY_BYTES).hexdigest()


def test_parse_expected_sha256_mismatch(tiny_path: Path) -> None:
    with pytest.raises(DatasetError, match="SHA-256"):
        parse_sequence_file(tiny_path, expected_sha256="0" * 64)


def test_load_accepts_path(tiny_path: Path) -> None:
    dataset = load_dataset(tiny_path)

    assert dataset.name == "tiny"
    assert dataset.n_interactions == 15


def test_load_accepts_path_string(tiny_path: Path) -> None:
    assert load_dataset(str(tiny_path)).n_users == 4


def test_load_path_is_still_validated(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "short.txt", ["1 1 2"])

    with pytest.raises(DatasetError, match=":1:"):
        load_dataset(path)


def test_load_unknown_name(data_dirs: dict[str, Path]) -> None:
    with pytest.raises(DatasetNotFoundError, match="beauty, sports, toys, yelp"):
        load_dataset("movielens")


def test_summary_reports_each_status(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lines(data_dirs["cwd_data"] / "Beauty.txt", TINY_LINES)
    write_lines(data_dirs["shared"] / "Toys_and_Games.txt", TINY_LINES)
    fake_registry_entry(monkeypatch, "beauty", TINY_BYTES)

    summaries = {summary.name: summary for summary in dataset_summary()}

    assert summaries["beauty"].checksum == "ok"
    assert summaries["toys"].checksum == "mismatch"
    assert summaries["sports"].checksum == "missing"
    assert summaries["toys"].n_interactions == 15
    assert summaries["sports"].n_users is None


def test_summary_reports_parse_error(data_dirs: dict[str, Path]) -> None:
    write_lines(data_dirs["cwd_data"] / "Yelp.txt", ["1 1 2 3", "1 1 2 3"])

    (summary,) = dataset_summary(["yelp"])

    assert summary.found
    assert "already appears on line 1" in summary.error


def test_summary_accepts_path(tiny_path: Path) -> None:
    (summary,) = dataset_summary([str(tiny_path)])

    assert summary.checksum == "unchecked"
    assert summary.n_users == 4


# Raw interaction tables


def test_kcore_item_removal_drops_user(tmp_path: Path) -> None:
    # Item z has one interaction, so it goes first; user d is then left with 2 < 3 rows.
    rows = ["user,item,timestamp"]
    for user in "abc":
        rows += [f"{user},p,1", f"{user},q,2", f"{user},r,3"]
    rows += ["d,p,1", "d,q,2", "d,z,3"]
    path = write_lines(tmp_path / "table.csv", rows)

    dataset = load_interactions_dataset(path, k=3)

    assert dataset.n_users == 3
    assert dataset.n_items == 3
    assert dataset.n_interactions == 9


def test_kcore_cascades_over_rounds(tmp_path: Path) -> None:
    # With k=2: item d goes, then user u4, then item c, then user u3; u1 and u2 remain.
    rows = [
        "user,item,timestamp",
        "u1,a,1",
        "u1,b,2",
        "u2,a,1",
        "u2,b,2",
        "u3,b,1",
        "u3,c,2",
        "u4,c,1",
        "u4,d,2",
    ]
    table = read_interactions(write_lines(tmp_path / "chain.csv", rows))

    core = kcore_filter(table, k=2)

    assert sorted(set(core["user"])) == ["u1", "u2"]
    assert sorted(set(core["item"])) == ["a", "b"]


def test_kcore_rejects_invalid_k(tmp_path: Path) -> None:
    table = read_interactions(write_lines(tmp_path / "t.csv", ["user,item,timestamp", "a,b,1"]))

    with pytest.raises(DatasetError, match="positive integer"):
        kcore_filter(table, k=0)


def test_raw_loader_rejects_k_below_three(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["user,item,timestamp", "a,b,1"])

    with pytest.raises(DatasetError, match="k must be an integer >= 3"):
        load_interactions_dataset(path, k=2)


def test_raw_loader_orders_by_time_stably(tmp_path: Path) -> None:
    # User 20's rows are out of order, its items y and x share timestamp 5, and all of user
    # 30's rows share one timestamp, so ties must keep the file order.
    rows = [
        "user_id\titem_id\tts",
        "20\tz\t9",
        "10\tx\t1",
        "30\tw\t1",
        "20\ty\t5",
        "10\ty\t2",
        "30\tx\t1",
        "20\tx\t5",
        "10\tz\t3",
        "30\ty\t1",
        "20\tw\t1",
        "10\tw\t4",
        "30\tz\t1",
    ]
    path = write_lines(tmp_path / "table.tsv", rows)

    dataset = load_interactions_dataset(
        path, k=3, user_col="user_id", item_col="item_id", time_col="ts"
    )

    # Users are numbered by first appearance: 20, 10, 30. Items are numbered by first
    # appearance in the sorted sequences, and user 20's sorted items are w, y, x, z.
    assert dataset.user_ids.tolist() == [1, 2, 3]
    assert [s.tolist() for s in dataset.sequences] == [[1, 2, 3, 4], [3, 2, 4, 1], [1, 3, 2, 4]]


def test_raw_loader_accepts_iso_dates(tmp_path: Path) -> None:
    rows = ["user,item,timestamp"]
    for user in ("a", "b", "c"):
        rows += [f"{user},x,2021-03-01T10:00:00Z", f"{user},y,2021-01-01", f"{user},z,2021-02-01"]
    path = write_lines(tmp_path / "dates.csv", rows)

    dataset = load_interactions_dataset(path, k=3)

    assert [s.tolist() for s in dataset.sequences] == [[1, 2, 3]] * 3
    assert dataset.n_items == 3


def test_raw_loader_writes_sequence_file(tmp_path: Path) -> None:
    rows = ["user,item,timestamp"]
    for user in ("a", "b", "c"):
        rows += [f"{user},p,1", f"{user},q,2", f"{user},r,3"]
    output = tmp_path / "out" / "seq.txt"

    dataset = load_interactions_dataset(write_lines(tmp_path / "t.csv", rows), k=3, output=output)

    assert output.read_text() == "1 1 2 3\n2 1 2 3\n3 1 2 3\n"
    assert dataset.path == output
    assert dataset.sha256 == hashlib.sha256(output.read_bytes()).hexdigest()
    assert os.listdir(output.parent) == ["seq.txt"]


def test_raw_loader_result_has_no_checksum(tmp_path: Path) -> None:
    rows = ["user,item,timestamp"]
    for user in ("a", "b", "c"):
        rows += [f"{user},p,1", f"{user},q,2", f"{user},r,3"]

    dataset = load_interactions_dataset(write_lines(tmp_path / "t.csv", rows), k=3)

    assert dataset.sha256 is None
    assert dataset.path is None


def test_raw_loader_missing_column(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["uid,item,timestamp", "a,p,1"])

    with pytest.raises(DatasetError, match=r"missing column\(s\) 'user'.*--user-col"):
        load_interactions_dataset(path)


def test_raw_loader_missing_value_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["user,item,timestamp", "a,p,1", "b,,2"])

    with pytest.raises(DatasetError, match=r"t\.csv:3: no item value"):
        read_interactions(path)


def test_raw_loader_empty_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["user,item,timestamp", "a,p,1", "", "b,q,2"])

    with pytest.raises(DatasetError, match=r"t\.csv:3: no user value"):
        read_interactions(path)


def test_raw_loader_bad_timestamp_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["user,item,timestamp", "a,p,1", "a,q,soon"])

    with pytest.raises(DatasetError, match=r"t\.csv:3: timestamp 'soon'"):
        read_interactions(path)


def test_raw_loader_mixed_timestamp_kinds(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "t.csv", ["user,item,timestamp", "a,p,2021-01-01", "a,q,1700000000"]
    )

    with pytest.raises(DatasetError, match=r"t\.csv:3: timestamp '1700000000' is a number"):
        read_interactions(path)


def test_raw_loader_empty_table(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["user,item,timestamp"])

    with pytest.raises(DatasetError, match="contains no interactions"):
        load_interactions_dataset(path)


def test_raw_loader_everything_filtered(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["user,item,timestamp", "a,p,1", "a,q,2", "a,r,3"])

    with pytest.raises(DatasetError, match="no interactions left after 5-core filtering of 3 rows"):
        load_interactions_dataset(path, k=5)


MOVIELENS_LINES = [
    # user 3 rated movie 40 only once, so 40 falls out of the 3-core and user 3 with it.
    "1::10::5::978300760",
    "1::20::3::978300761",
    "1::30::4::978300762",
    "2::30::4::978300700",
    "2::20::2::978300800",
    "2::10::1::978300900",
    "3::10::5::978300100",
    "3::40::5::978300200",
    "3::20::5::978300300",
    "4::20::3::978300001",
    "4::10::3::978300002",
    "4::30::3::978300001",
]


def test_movielens_loader_kcore(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ratings.dat", MOVIELENS_LINES)

    dataset = load_interactions_dataset(path, k=3)

    assert dataset.n_users == 3
    assert dataset.n_items == 3
    assert [s.tolist() for s in dataset.sequences] == [[1, 2, 3], [3, 2, 1], [2, 3, 1]]


def test_movielens_format_by_content(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ratings.txt", MOVIELENS_LINES)

    table = read_interactions(path)

    assert len(table) == len(MOVIELENS_LINES)
    assert table["timestamp"].iloc[0] == 978300760


def test_movielens_malformed_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ratings.dat", [*MOVIELENS_LINES[:3], "2::30::4::978300700::extra"]
    )

    with pytest.raises(DatasetError, match=r"ratings\.dat.*line 4"):
        read_interactions(path)


def test_movielens_short_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ratings.dat", [*MOVIELENS_LINES[:3], "2::30"])

    with pytest.raises(DatasetError, match=r"ratings\.dat:4: no timestamp value"):
        read_interactions(path)


# Fetch (no network: loopback and patched openers only)


def test_download_unreachable_fails_fast(tmp_path: Path) -> None:
    destination = tmp_path / "Beauty.txt"
    started = time.perf_counter()

    with pytest.raises(DownloadError) as caught:
        download_file("http://127.0.0.1:9/Beauty.txt", destination, sha256=None, timeout=2.0)

    assert time.perf_counter() - started < 5.0
    assert str(destination) in str(caught.value)
    assert not destination.exists()


def test_fetch_offline_message(data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(fetch_module, "urlopen", offline)

    with pytest.raises(DownloadError) as caught:
        fetch_dataset("beauty")

    message = str(caught.value)
    assert str(data_dirs["cwd_data"] / "Beauty.txt") in message
    assert "no route to host" in message
    assert DATA_ENV_VAR in message


def test_fetch_writes_verified_file(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry_entry(monkeypatch, "toys", TINY_BYTES)
    requested = []

    def serve(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(TINY_BYTES)

    monkeypatch.setattr(fetch_module, "urlopen", serve)
    monkeypatch.setenv(DATA_ENV_VAR, str(data_dirs["env"]))

    path = fetch_dataset("toys")

    assert path == data_dirs["env"] / "Toys_and_Games.txt"
    assert path.read_bytes() == TINY_BYTES
    assert requested == [REGISTRY["toys"].url]
    assert os.listdir(data_dirs["env"]) == ["Toys_and_Games.txt"]


def test_fetch_skips_existing_copy(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_registry_entry(monkeypatch, "toys", TINY_BYTES)
    existing = write_lines(data_dirs["shared"] / "Toys_and_Games.txt", TINY_LINES)

    def fail(url: str, timeout: float) -> None:
        raise AssertionError("fetch must not download a file that is present")

    monkeypatch.setattr(fetch_module, "urlopen", fail)

    assert fetch_dataset("toys") == existing


def test_fetch_rejects_bad_download(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "urlopen", lambda url, timeout: io.BytesIO(b"1 1 2 3\n"))

    with pytest.raises(DatasetError, match="was not written"):
        fetch_dataset("yelp", data_dirs["env"])

    assert not data_dirs["env"].exists() or os.listdir(data_dirs["env"]) == []


def test_fetch_keeps_mismatched_copy(data_dirs: dict[str, Path]) -> None:
    existing = write_lines(data_dirs["cwd_data"] / "Yelp.txt", TINY_LINES)

    with pytest.raises(DatasetError, match="move or delete it"):
        fetch_dataset("yelp")

    assert existing.read_bytes() == TINY_BYTES


# Public files (skipped when the shared data folder is absent)


def test_beauty_counts() -> None:
    path = SHARED_DATA / "Beauty.txt"
    if not path.is_file():
        pytest.skip(f"Beauty.txt not found at {path}; run `boundlab data fetch beauty` to test it")

    dataset = load_dataset("beauty", SHARED_DATA)
    split = leave_one_out(dataset)

    assert dataset.n_users == 22_363
    assert dataset.n_items == 12_101
    assert dataset.n_interactions == 198_502
    assert split.n_train_interactions == 153_776


# Command line


def test_cli_data_lists_datasets(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(data_dirs["cwd_data"] / "Beauty.txt", TINY_LINES)
    fake_registry_entry(monkeypatch, "beauty", TINY_BYTES)

    status = cli.main(["data"])

    lines = capsys.readouterr().out.splitlines()
    beauty = next(line for line in lines if line.startswith("beauty"))
    assert status == 0
    assert beauty.split()[:7] == ["beauty", "found", "ok", "4", "6", "15", "3.75"]
    assert next(line for line in lines if line.startswith("yelp")).split()[:3] == [
        "yelp",
        "missing",
        "missing",
    ]
    assert any("boundlab data fetch NAME" in line for line in lines)


def test_cli_data_flags_mismatch(
    data_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(data_dirs["cwd_data"] / "Beauty.txt", TINY_LINES)

    status = cli.main(["data"])

    out = capsys.readouterr().out
    assert status == 1
    assert "mismatch" in out


def test_cli_data_show_path(tiny_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["data", "show", str(tiny_path)])

    out = capsys.readouterr().out
    assert status == 0
    assert "train interactions 7" in out


def test_cli_data_fetch_offline(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(fetch_module, "urlopen", offline)

    status = cli.main(["data", "fetch", "sports", "--data-dir", str(data_dirs["env"])])

    assert status == 1
    assert "network is unreachable" in capsys.readouterr().err


def test_cli_data_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_lines(tmp_path / "ratings.dat", MOVIELENS_LINES)
    output = tmp_path / "ml.txt"

    status = cli.main(["data", "convert", str(table), str(output), "--k", "3"])

    assert status == 0
    assert output.read_text().splitlines()[0] == "1 1 2 3"
    assert str(output) in capsys.readouterr().out
