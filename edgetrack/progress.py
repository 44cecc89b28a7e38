"""The one progress protocol of long library jobs (benchmarks, conversion, quantization,
reports, the photo library): ``progress(stage, done, total)``.

The library never draws progress itself; the CLI passes a callback that does (a rich bar).
``stage`` names what is being done (it may change during a job), ``done`` of ``total`` units
of it are finished. Two loops report other things and say so in their own types: the
tracking loop reports frames per sequence (``edgetrack.evaluation.FrameProgress``) and
training reports steps with their losses (``training.train.Progress``).
"""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...
