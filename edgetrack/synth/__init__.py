"""Synthetic tracking sequences with exact ground truth, made from real photographs that ship
inside installed packages (scikit-image, matplotlib); see ``docs/synth.md``.

Photos per split (``edgetrack.synth.photos``; the eval split never uses a train photo):

- train: astronaut, motorcycle_left, motorcycle_right, immunohistochemistry, retina, moon,
  brick, grass, text, cell, clock
- eval: chelsea, coffee, rocket, hubble_deep_field, grace_hopper (matplotlib), camera, coins,
  gravel, page

In memory: ``generate_sequence(index, seed, split, size, n_frames)`` returns
``(frames, gt, absent, meta)``; ``render_sequence(..., masks=True)`` also returns the target's
alpha mask per frame. On disk: ``write_dataset(out, n, seed, split, ...)``.
"""
from edgetrack.synth.generator import (
    ABSENT_VISIBLE_FRACTION,
    CHALLENGES,
    GENERATOR_VERSION,
    SynthSequence,
    generate_sequence,
    plan_sequence,
    render_sequence,
    sequence_name,
)
from edgetrack.synth.photos import EVAL_PHOTOS, PHOTOS, SPLITS, TRAIN_PHOTOS, load_photo, split_photos

__all__ = [
    "ABSENT_VISIBLE_FRACTION", "CHALLENGES", "EVAL_PHOTOS", "GENERATOR_VERSION", "PHOTOS", "SPLITS",
    "SynthSequence", "TRAIN_PHOTOS", "generate_sequence", "load_photo", "plan_sequence", "render_sequence",
    "sequence_name", "split_photos",
]
