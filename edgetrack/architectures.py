"""The names of the model configurations, torch-free: what ``--arch`` takes.

The configurations themselves (``training.models.configs.CONFIGS``) live with the torch
models; this is their list by name and kind (``mixformerv2``: students, what ``edgetrack
convert`` exports; ``mixvit``: teachers), so that the CLI can show it in its help without
importing torch. ``tests/test_import_contract.py`` checks that the two agree.
"""
from __future__ import annotations

# name -> kind (a configuration's ``arch``), in the order of the registry
ARCHITECTURES: dict[str, str] = {
    "mixformerv2-s": "mixformerv2",
    "mixformerv2-b": "mixformerv2",
    "mixvit-b": "mixvit",
    "mixformerv2-tiny": "mixformerv2",
    "mixvit-tiny": "mixvit",
    "mixvit-mini": "mixvit",
    "mixvit-mini-d4": "mixvit",
    "mixformerv2-mini": "mixformerv2",
    "mixformerv2-mini-s160": "mixformerv2",
    "mixformerv2-mini-d6": "mixformerv2",
    "mixformerv2-mini-s": "mixformerv2",
}
KINDS = ("mixformerv2", "mixvit")


def list_configs(kind: str | None = None) -> list[str]:
    """The configuration names, sorted; only those of ``kind`` (``mixformerv2`` or ``mixvit``) when given."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    return sorted(name for name, k in ARCHITECTURES.items() if kind is None or k == kind)
