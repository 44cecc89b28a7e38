"""The torch engine of the runtime tracker (defined in :mod:`training.engine`, which the
training loop's validation uses too); re-exported here for conversion checks and benchmarks."""
from training.engine import TorchEngine

__all__ = ["TorchEngine"]
