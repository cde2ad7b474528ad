"""Sequential-recommendation datasets: registry, parsing, raw-table conversion and splits.

Typical use::

    from boundlab.data import load_dataset, leave_one_out

    split = leave_one_out(load_dataset("beauty"))
    exclude = split.test.exclusion_index(slice(0, 256))  # (256, L) score columns, -1 padded
"""

from boundlab.data.fetch import DownloadError, download_file, fetch_dataset
from boundlab.data.interactions import (
    kcore_filter,
    load_interactions_dataset,
    read_interactions,
    sequences_from_interactions,
)
from boundlab.data.registry import (
    DATA_ENV_VAR,
    REGISTRY,
    DatasetInfo,
    DatasetSummary,
    data_dir_candidates,
    dataset_info,
    dataset_summary,
    default_download_dir,
    find_dataset_file,
    load_dataset,
    locate_dataset,
    summarize_dataset,
)
from boundlab.data.sequences import (
    MIN_SEQUENCE_LENGTH,
    DatasetError,
    DatasetNotFoundError,
    SequenceDataset,
    file_sha256,
    parse_sequence_file,
    write_sequence_file,
)
from boundlab.data.split import (
    DEFAULT_HISTORY_POLICY,
    EvaluationSet,
    HistoryPolicy,
    LeaveOneOutSplit,
    exclusion_index,
    exclusion_mask,
    leave_one_out,
)

__all__ = [
    "DATA_ENV_VAR",
    "DEFAULT_HISTORY_POLICY",
    "MIN_SEQUENCE_LENGTH",
    "REGISTRY",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetSummary",
    "DownloadError",
    "EvaluationSet",
    "HistoryPolicy",
    "LeaveOneOutSplit",
    "SequenceDataset",
    "data_dir_candidates",
    "dataset_info",
    "dataset_summary",
    "default_download_dir",
    "download_file",
    "exclusion_index",
    "exclusion_mask",
    "fetch_dataset",
    "file_sha256",
    "find_dataset_file",
    "kcore_filter",
    "leave_one_out",
    "limit_users",
    "load_dataset",
    "load_interactions_dataset",
    "locate_dataset",
    "parse_sequence_file",
    "read_interactions",
    "sequences_from_interactions",
    "summarize_dataset",
    "write_sequence_file",
]


def limit_users(dataset: SequenceDataset, n: int) -> SequenceDataset:
    """Return the first ``n`` users of ``dataset`` in file order, keeping its catalogue size."""
    return dataset.limit_users(n)
