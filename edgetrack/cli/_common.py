"""What the commands share: the dataset option, the "install edgetrack[train]" check and the
progress bars that library functions feed through ``(stage, done, total)`` callbacks."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Optional

import typer

from edgetrack.errors import EdgetrackError

ProgressFn = Callable[[str, int, int], None]

DATASET_HELP = (
    "Dataset as KIND:PATH; KIND is lasot[-test|-train|-all], got10k[-train|-val|-test], "
    "trackingnet[-test|-train], otb, uav123 or folder, e.g. lasot:/data/LaSOT or folder:/tmp/synth_eval."
)
ABSENT_HELP = (
    "Frames where the target is absent but annotated: 'score' them against their box like the got10k "
    "toolkit (default), count them as 'fail'ures (pytracking LaSOT), or 'exclude' them."
)


def dataset_option(help: str = DATASET_HELP) -> Any:
    """The required ``--dataset/-d KIND:PATH`` option of ``eval``, ``analyze`` and ``report``."""
    return typer.Option(..., "--dataset", "-d", help=help)


def require_extra(command: str, module: str) -> ModuleType:
    """Import ``module`` (torch, nncf) for ``edgetrack command``, or fail in one line that says
    which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EdgetrackError(f"`edgetrack {command}` needs {module}: pip install \"edgetrack[train]\"") from None


def sequence_names(sequences: Optional[str]) -> Optional[list[str]]:
    """``--sequences a,b,c`` as a list (None when not given)."""
    if not sequences:
        return None
    names = [s.strip() for s in sequences.split(",") if s.strip()]
    if not names:
        raise EdgetrackError(f"--sequences {sequences!r}: expected comma-separated sequence names")
    return names


def check_update_interval_option(update_interval: Optional[int]) -> Optional[int]:
    """``--update-interval`` of ``run`` and ``eval``: None (the bundle's) or 1 or more."""
    if update_interval is not None and update_interval < 1:
        raise EdgetrackError(f"--update-interval {update_interval}: expected 1 or more (frames between template updates)")
    return update_interval


REDETECT_HELP = ("Re-detection windows searched per frame while the target is lost (confidence below 0.3): "
                 "a grid over the whole frame, in turns. Default 2; 0 turns it off (the reference MixFormerV2 "
                 "tracker, which only searches around its last box).")


def check_redetect_option(redetect: Optional[int]) -> Optional[int]:
    """``--redetect`` of ``run`` and ``eval``: None (the default) or 0 or more."""
    if redetect is not None and redetect < 0:
        raise EdgetrackError(f"--redetect {redetect}: expected 0 or more (windows per lost frame; 0 turns it off)")
    return redetect


def check_absent(absent: str) -> str:
    """``--absent``: one of the scoring policies of absent frames."""
    from edgetrack.metrics import ABSENT_POLICIES

    if absent not in ABSENT_POLICIES:
        raise EdgetrackError(f"--absent {absent!r}: expected one of {', '.join(ABSENT_POLICIES)}")
    return absent


@contextmanager
def step_progress() -> Iterator[ProgressFn]:
    """One rich progress bar fed by ``(step, done, total)``: the bar shows the current step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=False) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda step, done, total: bar.update(task, description=step, completed=done, total=total)


@contextmanager
def stage_progress(refresh_thread: bool = True) -> Iterator[ProgressFn]:
    """A rich progress bar per stage, fed by ``(stage, done, total)``. ``refresh_thread=False``
    redraws only when fed (no refresh thread), so that it does not disturb what ``bench`` times."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  auto_refresh=refresh_thread, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None, refresh=not refresh_thread)

        yield update
