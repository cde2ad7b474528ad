"""boundlab: measure and prove how tightly recommendation losses bound ranking metrics."""

from boundlab.ranking import target_ranks, target_ranks_streaming

__version__ = "0.1.0"

__all__ = ["__version__", "target_ranks", "target_ranks_streaming"]
