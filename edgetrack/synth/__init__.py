"""Synthetic tracking sequences with exact ground truth, made from real photographs that ship
inside installed packages (scikit-image, matplotlib); see ``docs/synth.md``.

Photos per split (``edgetrack.synth.photos``; the eval split never uses a train photo):

- train: astronaut, motorcycle_left, motorcycle_right, immunohistochemistry, retina, moon,
  brick, grass, text, cell, clock; plus, when it has been built (``edgetrack data``), the photo
  library of ``edgetrack.synth.library``: photographs from Debian packages
- eval: chelsea, coffee, rocket, hubble_deep_field, grace_hopper (matplotlib), camera, coins,
  gravel, page

In memory: ``generate_sequence(index, seed, split, size, n_frames)`` returns an
:class:`edgetrack.sequence.Sequence` with its frames in memory (``masks=True``: also the
target's alpha mask per frame). On disk: ``write_dataset(out, n, seed, split, ...)``.
Sequences are numbered from 1 (``sequence_name(split, 1)`` is ``synth-<split>-0001``).
"""
from edgetrack.synth.generator import (
    ABSENT_VISIBLE_FRACTION,
    CHALLENGES,
    GENERATOR_VERSION,
    SPLIT_VERSIONS,
    generate_sequence,
    plan_sequence,
    render_sequence,
    sequence_name,
)
from edgetrack.synth.library import PhotoLibrary, load_library, open_library
from edgetrack.synth.photos import EVAL_PHOTOS, PHOTOS, SPLITS, TRAIN_PHOTOS, load_photo, split_photos

__all__ = [
    "ABSENT_VISIBLE_FRACTION", "CHALLENGES", "EVAL_PHOTOS", "GENERATOR_VERSION", "PHOTOS", "PhotoLibrary",
    "SPLITS", "SPLIT_VERSIONS", "TRAIN_PHOTOS", "generate_sequence", "load_library", "load_photo",
    "open_library", "plan_sequence", "render_sequence", "sequence_name", "split_photos",
]
