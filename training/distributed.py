"""Several processes under ``torchrun``: PyTorch's own ``torch.distributed`` and
``DistributedDataParallel``, nothing home-made.

``torchrun --nproc-per-node N -m edgetrack.cli train ...`` (or ``-m training.campaign``) starts
N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their
environment; :func:`setup` joins them into one process group (gloo on the CPU, NCCL on GPUs,
process ``LOCAL_RANK`` on GPU ``LOCAL_RANK``). Without those variables everything here is a
no-op and training runs as one process.

The rules the step loop (:func:`training.train.run_steps`) follows:

* batch ``k`` is the same global batch whatever the number of processes (samples
  ``k*B .. k*B+B-1`` of the seeded dataset); rank ``r`` of ``W`` makes and trains on the fixed
  slice :func:`rank_slice` of it, so a run resumed with another ``W`` replays the same batches;
* gradients are averaged by DDP; each rank's loss is weighted by its share of the batch, so
  uneven slices give the gradient of the global batch mean;
* rank 0 alone writes checkpoints (and best checkpoints) and logs, and validates; the others
  wait at a barrier;
* anything that depends on the clock (time budgets) is decided by rank 0 and broadcast.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# validation on rank 0 can take a while; the other ranks wait at a barrier that long
TIMEOUT = timedelta(hours=2)


def launched() -> bool:
    """True inside a multi-process ``torchrun`` launch (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True once this process is part of an initialised process group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (from the environment before :func:`setup`, 0 when not launched)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup(device: torch.device) -> bool:
    """Join the ``torchrun`` process group (once) for training on ``device``; returns whether
    training is distributed. NCCL for CUDA devices, gloo otherwise."""
    if not launched():
        return False
    if dist.is_initialized():
        return active()
    from edgetrack.errors import EdgetrackError

    if not dist.is_available():
        raise EdgetrackError("launched by torchrun, but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    log.info("process group: rank %d of %d, backend %s, device %s", dist.get_rank(), dist.get_world_size(),
             backend, device)
    return active()


def shutdown() -> None:
    """Leave the process group (end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def rank_slice(batch_size: int, r: int | None = None, w: int | None = None) -> tuple[int, int]:
    """The fixed share ``[lo, hi)`` of a global batch of ``batch_size`` that rank ``r`` of
    ``w`` trains on: contiguous, sizes differ by at most one, the first ranks take the extra."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    if batch_size < w:
        from edgetrack.errors import EdgetrackError

        raise EdgetrackError(f"batch size {batch_size} is smaller than the {w} processes; "
                             f"give each process at least one sample (--batch-size >= {w})")
    base, extra = divmod(batch_size, w)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def agree(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (decisions that read the clock)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def sum_all(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over the ranks."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when distributed, else ``model`` itself.

    Unused parameters are allowed (the stages leave heads out of some forwards, as the
    reference's FIND_UNUSED_PARAMETERS does); a model with no trainable parameter is not wrapped."""
    if not active() or not any(p.requires_grad for p in model.parameters()):
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


__all__ = ["active", "agree", "barrier", "is_main", "launched", "local_rank", "rank", "rank_slice", "setup",
           "shutdown", "sum_all", "world_size", "wrap"]
