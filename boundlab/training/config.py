"""Training configuration, the default run folder and the choice of device."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from boundlab import losses
from boundlab.data import DEFAULT_HISTORY_POLICY, REGISTRY, HistoryPolicy
from boundlab.models import MODEL_CONFIGS

logger = logging.getLogger(__name__)

# Fields that may differ between an interrupted run and the call that resumes it. Every other
# field changes what the resumed epochs compute, so a resume with a new value is rejected. The
# audit settings are resumable because audits never change the weights; every audit line
# records its own users, draws and surrogates.
RESUMABLE_FIELDS = frozenset({
    "epochs", "patience", "device", "quiet", "resume", "out", "data_dir", "eval_batch_size",
    "audit_every", "audit_users", "audit_draws", "audit_surrogates",
})

# Surrogates audited during training: CE and CE-η bound −log NDCG for every user, sampled softmax
# and SCE with the bounding probabilities of Xu et al. 2024 (arXiv 2408.14238), BCE and BPR without.
DEFAULT_AUDIT_SURROGATES = ("ce", "ce_eta(eta=0.7)", "ssm(k=500)", "sce(alpha=100,k=500)", "bce", "bpr")


@dataclass
class TrainConfig:
    """Every setting of one training run; ``config.json`` in the run folder stores it.

    Defaults follow the SASRec protocol of Xu et al. 2024 (arXiv 2408.14238) on Amazon Beauty:
    batch 512, Adam with lr 5e-4 and weight decay 1e-8, max length 50, validation NDCG@10 every
    5 epochs. ``dropout=None`` keeps the model config's default (0.6 for SASRec, 0.25 for GRU4Rec).
    ``device="auto"`` picks CUDA when available. ``patience`` counts evaluations without a new
    best validation NDCG@10 (0 disables early stopping). ``out=None`` means
    :func:`default_run_folder`.

    ``audit_every`` E > 0 audits the first ``audit_users`` validation users before the first
    epoch, after every E-th epoch and after the last epoch, with ``audit_draws`` draws per
    sampled surrogate (see :mod:`boundlab.training.audits`); 0 disables audits.
    """

    dataset: str = "beauty"
    data_dir: str | None = None
    model: str = "sasrec"
    loss: str = "ce"
    epochs: int = 200
    batch_size: int = 512
    lr: float = 5e-4
    weight_decay: float = 1e-8
    dropout: float | None = None
    max_len: int = 50
    seed: int = 0
    device: str = "auto"
    limit_users: int | None = None
    eval_every: int = 5
    patience: int = 10
    out: str | None = None
    resume: bool = False
    bf16: bool = False
    history: str = DEFAULT_HISTORY_POLICY.value
    quiet: bool = False
    eval_batch_size: int = 512
    audit_every: int = 0
    audit_users: int = 1000
    audit_draws: int = 5
    audit_surrogates: list[str] = field(default_factory=lambda: list(DEFAULT_AUDIT_SURROGATES))

    def __post_init__(self) -> None:
        """Validate every field; errors name the field, its value and the accepted range."""
        positive = ("epochs", "batch_size", "max_len", "eval_every", "eval_batch_size", "audit_users", "audit_draws")
        for name in positive:
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("patience", self.patience, minimum=0)
        _check_int("audit_every", self.audit_every, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        if self.limit_users is not None:
            _check_int("limit_users", self.limit_users, minimum=1)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be positive, got 0")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.model not in MODEL_CONFIGS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(sorted(MODEL_CONFIGS))}")
        try:
            HistoryPolicy(self.history)
        except ValueError:
            choices = ", ".join(policy.value for policy in HistoryPolicy)
            raise ValueError(f"unknown history policy {self.history!r}; choose one of {choices}") from None
        # Parsing here makes a bad spec fail before any data is loaded; the canonical spec is stored.
        self.loss = losses.get(self.loss).spec
        self.audit_surrogates = _canonical_surrogates(self.audit_surrogates)
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a registered name or a file path, got {self.dataset!r}")
        # An absolute path keeps the stored config usable from another working directory.
        if self.dataset.lower() not in REGISTRY and Path(self.dataset).expanduser().is_file():
            self.dataset = str(Path(self.dataset).expanduser().resolve())

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict` output, raising ValueError on unknown keys."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid fields: {', '.join(sorted(known))}")
        return cls(**values)

    def model_kwargs(self, n_items: int) -> dict[str, Any]:
        """Return the keyword arguments of the model config for a catalogue of ``n_items``."""
        kwargs: dict[str, Any] = {"n_items": n_items, "max_len": self.max_len}
        if self.dropout is not None:
            kwargs["dropout"] = self.dropout
        return kwargs


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _canonical_surrogates(specs: object) -> list[str]:
    """Return the canonical specs of a list of audit surrogates, rejecting bad or repeated ones."""
    if isinstance(specs, str) or not isinstance(specs, list | tuple):
        raise ValueError(f"audit_surrogates must be a list of loss specs such as ['ce', 'bpr'], got {specs!r}")
    if not specs:
        raise ValueError("audit_surrogates is empty; give at least one loss spec such as 'ce'")
    canonical = []
    for spec in specs:
        try:
            canonical.append(losses.get(spec).spec)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid audit surrogate {spec!r}: {error}") from None
    repeated = sorted({spec for spec in canonical if canonical.count(spec) > 1})
    if repeated:
        raise ValueError(f"audit_surrogates lists {', '.join(repeated)} more than once; give each surrogate once")
    return canonical


def default_run_folder(config: TrainConfig) -> Path:
    """Return ``runs/<dataset>-<model>-<loss>-seed<seed>`` with the loss spec made file-name safe."""
    dataset = Path(config.dataset).stem if not _is_plain_name(config.dataset) else config.dataset
    parts = [dataset.lower(), config.model, config.loss]
    if config.limit_users is not None:
        parts.append(f"users{config.limit_users}")
    parts.append(f"seed{config.seed}")
    name = "-".join(re.sub(r"[^A-Za-z0-9_.=]+", "_", part).strip("_") for part in parts)
    return Path("runs") / name


def _is_plain_name(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_]+", value) is not None


def changed_fields(stored: TrainConfig, requested: TrainConfig) -> list[str]:
    """Return the fields, outside :data:`RESUMABLE_FIELDS`, in which two configs differ."""
    first, second = stored.to_dict(), requested.to_dict()
    return sorted(name for name in first if name not in RESUMABLE_FIELDS and first[name] != second[name])


def resolve_device(name: str) -> torch.device:
    """Return the device for ``name``: "auto" picks CUDA when available, else the CPU.

    A CUDA device requested on a machine without one falls back to the CPU with a warning.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"invalid device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("device %r requested but CUDA is not available; training on the CPU", name)
        return torch.device("cpu")
    return device
