"""Settings shared by the notebooks in ``notebooks/``: small-parameter mode, figure folder, saving.

Every notebook starts with ``settings = boundlab.notebook.settings()``. Two environment variables
change what it returns, so that the test suite can run each notebook quickly without touching the
committed figures:

``BOUNDLAB_SMALL=1``
    small-parameter mode: fewer users, draws and grid points; the figures keep their layout.
``BOUNDLAB_FIGURES=DIR``
    folder the figures are written to (default: ``figures/`` of the repository).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NotebookSettings:
    """``small``: small-parameter mode; ``figures``: output folder; ``repository``: the checkout."""

    small: bool
    figures: Path
    repository: Path

    def pick(self, full, small):
        """Return ``small`` in small-parameter mode and ``full`` otherwise."""
        return small if self.small else full


def settings() -> NotebookSettings:
    """Read ``BOUNDLAB_SMALL`` and ``BOUNDLAB_FIGURES`` and create the figure folder."""
    flag = os.environ.get("BOUNDLAB_SMALL", "0").strip().lower()
    if flag not in ("0", "1", "", "false", "true", "no", "yes"):
        raise ValueError(f"BOUNDLAB_SMALL={flag!r} is not understood; set it to 1 (small mode) or 0")
    small = flag in ("1", "true", "yes")
    figures = Path(os.environ.get("BOUNDLAB_FIGURES") or REPOSITORY / "figures")
    figures.mkdir(parents=True, exist_ok=True)
    return NotebookSettings(small=small, figures=figures, repository=REPOSITORY)


def save_figure(figure, stem: str | os.PathLike[str], *, dpi: int = 150) -> list[Path]:
    """Write ``figure`` to ``stem.png`` and ``stem.pdf`` atomically and return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        target = stem.with_suffix(suffix)
        temporary = target.with_name(f".{target.name}.tmp")
        try:
            # Fixed metadata keeps the files identical between runs of the same data.
            metadata = {"Software": None} if suffix == ".png" else {"CreationDate": None, "Producer": None}
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format=suffix[1:], metadata=metadata)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        paths.append(target)
    return paths
