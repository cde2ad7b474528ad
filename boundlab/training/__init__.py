"""Training of sequential recommenders with any loss of the registry, with checkpoints and resume.

Typical use::

    from boundlab.training import TrainConfig, train

    result = train(TrainConfig(dataset="beauty", loss="sce(alpha=100,k=500)", epochs=300))
    print(result.test["NDCG@10"], result.run_dir)
"""

from boundlab.training.config import (
    DEFAULT_AUDIT_SURROGATES,
    RESUMABLE_FIELDS,
    TrainConfig,
    changed_fields,
    default_run_folder,
    resolve_device,
)
from boundlab.training.examples import TrainingExamples, build_training_examples
from boundlab.training.loop import (
    BEST,
    LAST,
    SELECTION_METRIC,
    TrainingError,
    TrainingState,
    TrainResult,
    dataset_record,
    load_training_dataset,
    train,
    train_epoch,
)
from boundlab.training.runlog import RunLog, read_audits, read_log

__all__ = [
    "BEST",
    "DEFAULT_AUDIT_SURROGATES",
    "LAST",
    "RESUMABLE_FIELDS",
    "SELECTION_METRIC",
    "RunLog",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingExamples",
    "TrainingState",
    "build_training_examples",
    "changed_fields",
    "dataset_record",
    "default_run_folder",
    "load_training_dataset",
    "read_audits",
    "read_log",
    "resolve_device",
    "train",
    "train_epoch",
]
