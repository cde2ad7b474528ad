"""Download registered datasets over HTTPS, verify their SHA-256 and write them atomically."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
from pathlib import Path
from urllib.request import urlopen

from boundlab.data.registry import (
    DATA_ENV_VAR,
    dataset_info,
    default_download_dir,
    find_dataset_file,
)
from boundlab.data.sequences import DatasetError, file_sha256, write_atomic

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0

# The registered files are under 2 MB, so anything far larger is not the expected file.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


class DownloadError(OSError):
    """A dataset download that failed: no network, an HTTP error, or a timeout.

    ``url`` is the requested address and ``reason`` the underlying error's description.
    """

    def __init__(self, message: str, url: str, reason: str) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


def download_file(
    url: str,
    destination: str | os.PathLike[str],
    *,
    sha256: str | None,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """Download ``url`` to ``destination`` atomically, rejecting content whose SHA-256 differs.

    Raises DownloadError when the request fails or times out after ``timeout`` seconds, and
    DatasetError on a checksum mismatch; in both cases ``destination`` is left untouched.
    """
    destination = Path(destination)
    if not url.startswith(("https://", "http://")):
        raise DatasetError(f"refusing to download {url!r}: only http(s) URLs are supported")
    if timeout <= 0:
        raise DatasetError(f"timeout must be positive seconds, got {timeout!r}")

    logger.info("downloading %s to %s", url, destination)
    try:
        with urlopen(url, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
    except (OSError, http.client.HTTPException) as error:
        # URLError, HTTPError and socket timeouts are all OSError subclasses.
        reason = str(getattr(error, "reason", error))
        raise DownloadError(
            f"could not download {url}: {reason}. Without network access, download the file "
            f"on another machine and copy it to {destination}.",
            url=url,
            reason=reason,
        ) from error
    if len(data) > max_bytes:
        raise DatasetError(
            f"{url} is larger than {max_bytes} bytes, so it is not the expected file"
        )

    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256.lower():
        raise DatasetError(
            f"{url}: downloaded SHA-256 is {actual} but {sha256} was expected, so the file was "
            f"not written to {destination}. The upstream file may have changed; get a copy "
            "with the expected checksum."
        )

    write_atomic(destination, data)
    logger.info("wrote %s (%d bytes, sha256 %s)", destination, len(data), actual)
    return destination


def fetch_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download registered dataset ``name`` unless a copy with the right checksum exists already.

    The file goes to ``default_download_dir(data_dir)``. An existing copy with another checksum
    is never overwritten. The call raises DatasetError instead, telling the user to move it away.
    """
    info = dataset_info(name)

    existing = find_dataset_file(info.name, data_dir)
    if existing is not None:
        if file_sha256(existing) == info.sha256:
            logger.info("%s is already present at %s", info.name, existing)
            return existing
        raise DatasetError(
            f"{existing} exists but its SHA-256 is not {info.sha256}; move or delete it and "
            f"run `boundlab data fetch {info.name}` again"
        )

    destination = default_download_dir(data_dir) / info.filename
    try:
        return download_file(info.url, destination, sha256=info.sha256, timeout=timeout)
    except DownloadError as error:
        raise DownloadError(
            f"could not download {info.name} from {info.url}: {error.reason}. Without network "
            f"access, copy {info.filename} (sha256 {info.sha256}) from another machine to "
            f"{destination}, or set ${DATA_ENV_VAR} to a folder that contains it.",
            url=error.url,
            reason=error.reason,
        ) from error.__cause__
