"""The tracker configuration: what the tracking loop needs to know about a model (torch-free).

One definition, used on both sides of the bundle:

* the runtime reads it from ``bundle.json`` (:meth:`TrackerConfig.from_meta`), where its fields
  stand once, at the top level;
* the training side's model configurations (``training.models.configs.ViTConfig`` and its
  MixFormerV2 / MixViT kinds) *are* tracker configurations: they inherit these fields and add
  the architecture numbers (depth, width, heads, ...). A checkpoint's ``config`` stays the flat
  ``dataclasses.asdict`` of the model configuration, as it always was.

In the manner of timm, which keeps ``model_args`` apart from ``pretrained_cfg``: ``bundle.json``
holds the tracker fields at its top level and, under ``config``, only the model's other fields
(:func:`model_args`); :func:`model_config_dict` puts the two together again (and reads the
bundles written before, whose ``config`` repeated the tracker fields).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from edgetrack.errors import EdgetrackError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """Crop sizes and factors, normalisation, head bins and the template update interval."""

    template_size: int
    search_size: int
    template_factor: float = 2.0
    search_factor: float = 4.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # bins of the box head's side distributions (the bundle's ``prob`` output); None for a model
    # without a distribution head (the MixViT teacher's corner head)
    bins: int | None = None
    # frames between online template updates (the reference tracker's default, MAX_SAMPLE_INTERVAL)
    update_interval: int = 200

    @classmethod
    def from_meta(cls, meta: dict) -> "TrackerConfig":
        """The tracker configuration of a ``bundle.json`` (its top-level fields)."""
        try:
            return TrackerConfig(
                template_size=int(meta["template_size"]), search_size=int(meta["search_size"]),
                template_factor=float(meta["template_factor"]), search_factor=float(meta["search_factor"]),
                mean=_triple(meta["mean"]), std=_triple(meta["std"]),
                bins=None if meta.get("bins") is None else int(meta["bins"]),
                update_interval=int(meta["update_interval"]))
        except KeyError as err:
            raise EdgetrackError(f"tracker configuration: no {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise EdgetrackError(f"tracker configuration: bad value ({err})") from None

    def tracker_config(self) -> "TrackerConfig":
        """These fields alone, as a plain :class:`TrackerConfig` (a model configuration keeps
        its architecture numbers out of the runtime's view)."""
        return TrackerConfig(**{name: getattr(self, name) for name in TRACKER_FIELDS})

    def to_meta(self) -> dict[str, Any]:
        """The fields as ``bundle.json`` writes them (mean/std as lists)."""
        return {name: list(v) if isinstance(v, tuple) else v
                for name, v in ((n, getattr(self, n)) for n in TRACKER_FIELDS)}


TRACKER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrackerConfig))


def _triple(values) -> tuple[float, float, float]:
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"expected three per-channel values, got {len(out)}")
    return out  # type: ignore[return-value]


def model_args(cfg) -> dict[str, Any]:
    """``asdict(cfg)`` of a model configuration without its tracker fields: what ``bundle.json``
    keeps under ``config``."""
    return {k: v for k, v in asdict(cfg).items() if k not in TRACKER_FIELDS}


def model_config_dict(meta: dict) -> dict[str, Any]:
    """The whole model configuration of a ``bundle.json`` as a flat dict (``asdict`` of the
    model configuration, the form of a checkpoint's ``config``): the top-level tracker fields
    with ``config`` over them. Bundles of every version: older ones repeat the tracker
    fields inside ``config``, with the same values."""
    tracker = {k: meta[k] for k in TRACKER_FIELDS if k in meta}
    return {**tracker, **meta.get("config", {})}
