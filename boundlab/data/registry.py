"""Registered public datasets, where to find their files, and how to load them by name or path."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from boundlab.data.sequences import (
    DatasetError,
    DatasetNotFoundError,
    SequenceDataset,
    file_sha256,
    parse_sequence_file,
)

logger = logging.getLogger(__name__)

DATA_ENV_VAR = "BOUNDLAB_DATA"

# The preprocessed files that the S3-Rec code (Zhou et al., CIKM 2020) introduced, as
# redistributed in the salesforce/ICLRec repository under data/.
# NOTE: the branch name "master" comes from other projects' links into that repository; it was
# not checked against GitHub itself, so `boundlab data fetch` may need the URL updated.
_ICLREC_DATA_URL = "https://raw.githubusercontent.com/salesforce/ICLRec/master/data/"

# The last folder searched is ``shared/data`` beside the repository checkout. A checkout placed
# next to the shared files therefore finds them with no configuration.
_REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA_DIR = _REPOSITORY_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: the file name, its expected SHA-256, and where to download it."""

    name: str
    filename: str
    sha256: str
    url: str
    description: str


def _iclrec_dataset(name: str, filename: str, sha256: str, description: str) -> DatasetInfo:
    return DatasetInfo(name, filename, sha256, _ICLREC_DATA_URL + filename, description)


REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        _iclrec_dataset(
            "beauty",
            "Beauty.txt",
            "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            "Amazon reviews 2014, category Beauty, 5-core",
        ),
        _iclrec_dataset(
            "sports",
            "Sports_and_Outdoors.txt",
            "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
            "Amazon reviews 2014, category Sports and Outdoors, 5-core",
        ),
        _iclrec_dataset(
            "toys",
            "Toys_and_Games.txt",
            "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
            "Amazon reviews 2014, category Toys and Games, 5-core",
        ),
        _iclrec_dataset(
            "yelp",
            "Yelp.txt",
            "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
            "Yelp open dataset, interactions of 2019, 5-core",
        ),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """Return the registry entry for ``name`` (case-insensitive), or raise DatasetError."""
    info = REGISTRY.get(name.lower())
    if info is None:
        raise DatasetError(
            f"unknown dataset {name!r}; registered datasets are {', '.join(REGISTRY)}, "
            "or pass the path of a one-user-per-line file"
        )
    return info


def data_dir_candidates(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Return the directories searched for dataset files, in order of precedence.

    An explicit ``data_dir`` is the only place searched. Otherwise the order is
    ``$BOUNDLAB_DATA`` (when set), ``./data``, then ``shared/data`` beside the repository.
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]

    candidates: list[Path] = []
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        candidates.append(Path(from_env).expanduser())
    candidates.append(Path.cwd() / "data")
    candidates.append(SHARED_DATA_DIR)

    # The same folder can appear twice, for example when ./data is the shared folder.
    unique: list[Path] = []
    for candidate in candidates:
        if all(_resolved(candidate) != _resolved(seen) for seen in unique):
            unique.append(candidate)
    return unique


def _resolved(path: Path) -> Path:
    return path.resolve() if path.exists() else path.absolute()


def default_download_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return where ``fetch`` writes: ``data_dir``, else ``$BOUNDLAB_DATA``, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path.cwd() / "data"


def find_dataset_file(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the first existing file for registered dataset ``name``, or None if there is none."""
    info = dataset_info(name)
    for directory in data_dir_candidates(data_dir):
        path = directory / info.filename
        if path.is_file():
            return path
    return None


def locate_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the file of registered dataset ``name``.

    Raises DatasetNotFoundError, listing every place searched, when no folder contains it.
    """
    path = find_dataset_file(name, data_dir)
    if path is not None:
        return path

    info = dataset_info(name)
    searched = "\n".join(
        f"  {directory / info.filename}" for directory in data_dir_candidates(data_dir)
    )
    raise DatasetNotFoundError(
        f"dataset {info.name!r} ({info.filename}) not found. Searched:\n{searched}\n"
        f"Download it with `boundlab data fetch {info.name}`, or fetch {info.url} yourself and "
        f"put it in one of these folders (or in the folder named by ${DATA_ENV_VAR})."
    )


def is_registered(name_or_path: str | os.PathLike[str]) -> bool:
    """Return whether ``name_or_path`` is a registered dataset name (case-insensitive)."""
    return isinstance(name_or_path, str) and name_or_path.lower() in REGISTRY


def load_dataset(
    name_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    verify_checksum: bool = True,
) -> SequenceDataset:
    """Load a registered dataset by name, or any one-user-per-line file by path.

    A registered name is searched as ``data_dir_candidates`` describes and its SHA-256 checked
    unless ``verify_checksum`` is False. A path is validated line by line but has no checksum.
    A registered name wins over a file of the same name in the working directory.
    """
    if is_registered(name_or_path):
        info = dataset_info(str(name_or_path))
        path = locate_dataset(info.name, data_dir)
        expected = info.sha256 if verify_checksum else None
        dataset = parse_sequence_file(path, name=info.name, expected_sha256=expected)
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{str(name_or_path)!r} is neither a registered dataset ({', '.join(REGISTRY)}) "
                "nor an existing file; check the spelling or the path"
            )
        dataset = parse_sequence_file(path)

    logger.info(
        "loaded %s from %s: %d users, %d items, %d interactions",
        dataset.name,
        dataset.path,
        dataset.n_users,
        dataset.n_items,
        dataset.n_interactions,
    )
    return dataset


@dataclass(frozen=True)
class DatasetSummary:
    """One row of ``boundlab data``: where a dataset is, whether its checksum matches, its size.

    ``checksum`` is "ok", "mismatch" or "missing" for registered datasets and "unchecked" for
    files given by path. The counts are None when the file is missing or failed to parse, and
    ``error`` then contains the reason.
    """

    name: str
    path: Path | None
    checksum: str
    n_users: int | None = None
    n_items: int | None = None
    n_interactions: int | None = None
    mean_length: float | None = None
    error: str | None = None

    @property
    def found(self) -> bool:
        """Whether the dataset file exists."""
        return self.path is not None


def summarize_dataset(dataset: SequenceDataset, checksum: str = "unchecked") -> DatasetSummary:
    """Return the ``DatasetSummary`` of an already loaded dataset."""
    return DatasetSummary(
        name=dataset.name,
        path=dataset.path,
        checksum=checksum,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        n_interactions=dataset.n_interactions,
        mean_length=dataset.mean_length,
    )


def dataset_summary(
    names_or_paths: list[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[DatasetSummary]:
    """Summarise the given datasets (default: every registered one) without raising on bad files.

    A file with a checksum mismatch is still parsed so that its counts can be compared.
    """
    if names_or_paths is None:
        names_or_paths = list(REGISTRY)

    summaries = []
    for name_or_path in names_or_paths:
        if not is_registered(name_or_path):
            summaries.append(_summarize_path(Path(name_or_path)))
            continue

        info = dataset_info(name_or_path)
        path = find_dataset_file(info.name, data_dir)
        if path is None:
            summaries.append(DatasetSummary(name=info.name, path=None, checksum="missing"))
            continue
        try:
            dataset = parse_sequence_file(path, name=info.name)
        except DatasetError as error:
            checksum = "ok" if file_sha256(path) == info.sha256 else "mismatch"
            summaries.append(DatasetSummary(info.name, path, checksum, error=str(error)))
            continue
        checksum = "ok" if dataset.sha256 == info.sha256 else "mismatch"
        summaries.append(summarize_dataset(dataset, checksum))
    return summaries


def _summarize_path(path: Path) -> DatasetSummary:
    if not path.is_file():
        return DatasetSummary(
            name=path.stem, path=None, checksum="missing", error=f"no file at {path}"
        )
    try:
        dataset = parse_sequence_file(path)
    except DatasetError as error:
        return DatasetSummary(path.stem, path, "unchecked", error=str(error))
    return summarize_dataset(dataset)
