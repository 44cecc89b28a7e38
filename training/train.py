"""The step loop shared by every stage: AdamW, lr schedule, gradient clipping, logging,
atomic resumable checkpoints.

Optimiser and schedule follow the reference (``lib/train/base_functions.py``,
``experiments/*.yaml`` of MCG-NJU/MixFormerV2): AdamW with weight decay 1e-4, the backbone at
0.1x the learning rate, gradients clipped to norm 0.1, a step schedule (x0.1 at 80% of training:
epoch 400 of 500; the score head at 50%: epoch 20 of 40). ``warmup_steps`` (linear) and a
cosine schedule are options.

Batch ``k`` is made of the samples ``k*B .. k*B+B-1`` of a seeded :class:`TripletDataset`, so a
run resumed from its last checkpoint sees the same batches it would have seen. Under ``torchrun``
each process trains on its fixed slice of that global batch (DDP; see :mod:`training.distributed`),
so the batches are the same whatever the number of processes.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from training import distributed
from training.checkpoint import read_checkpoint, save_atomic

log = logging.getLogger(__name__)

StepFn = Callable[[dict[str, torch.Tensor], int], tuple[torch.Tensor, dict[str, float]]]
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class Schedule:
    steps: int
    batch_size: int = 16
    lr: float = 4e-4
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1
    grad_clip: float = 0.1
    lr_schedule: str = "step"  # "step", "cosine" or "constant"
    lr_drop: float = 0.8  # step schedule: fraction of the steps after which lr *= lr_gamma
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    seed: int = 0
    threads: int | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (cuda when there is one)
    amp: bool | None = None  # mixed precision; None = on for CUDA, and on CPUs with native bf16 ($EDGETRACK_CPU_AMP)
    workers: int = 0  # data-loader processes making the batches (0: the training process itself)
    # crops made on the device from frames held there, the workers only drawing the samples
    # (training.data.DeviceFrames); None: on when training on CUDA from in-memory frames of one size
    device_crops: bool | None = None
    # seconds of training (validation excluded) after which the stage ends even before ``steps``;
    # the lr schedule then runs on whichever of steps and time is further along
    time_budget: float | None = None
    # stop after this many steps of this call (a dry run measuring throughput); the lr
    # schedule still spans ``steps``
    max_steps: int | None = None
    # exponential moving average of the weights (decay per step; 0: off). Validation then runs on
    # both the raw and the averaged weights; the best checkpoint is whichever did best, and the
    # stage's result the average unless the raw weights did better at the last validation.
    # Training goes on from the raw ones. The decay ramps up as min(ema, (1 + k) / (10 + k)).
    ema: float = 0.0

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps {self.steps} and batch size {self.batch_size} must be >= 1")
        if self.lr_schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"lr schedule {self.lr_schedule!r}: expected step, cosine or constant")
        if self.workers < 0 or (self.time_budget is not None and self.time_budget <= 0):
            raise ValueError(f"workers {self.workers} and time budget {self.time_budget}: expected >= 0 and > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max steps {self.max_steps}: expected >= 1")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema {self.ema}: expected a decay in [0, 1) (0: off)")

    def lr_factor(self, step: int, elapsed: float = 0.0) -> float:
        """Multiplier of the base learning rate at ``step`` (0-based), ``elapsed`` seconds into
        training (counts only with a ``time_budget``)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        timed = elapsed / self.time_budget if self.time_budget else 0.0
        if self.lr_schedule == "step":
            return self.lr_gamma if step >= int(self.lr_drop * self.steps) or timed >= self.lr_drop else 1.0
        if self.lr_schedule == "cosine":
            span = max(1, self.steps - self.warmup_steps)
            done = max((step - self.warmup_steps) / span, timed)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        return 1.0


def resolve_device(name: str) -> torch.device:
    """``cpu`` / ``cuda[:N]`` / ``auto``, with one clear error when CUDA is asked for and absent.
    Under ``torchrun``, plain ``cuda`` (or ``auto`` on a GPU machine) is GPU ``LOCAL_RANK``."""
    from edgetrack.errors import EdgetrackError

    name = (name or "cpu").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EdgetrackError(f"--device {name}: this torch build or machine has no CUDA device "
                                 f"(torch {torch.__version__}); use --device cpu or auto")
        if name == "cuda" and distributed.launched():
            return torch.device("cuda", distributed.local_rank())
        return torch.device(name)
    if name != "cpu":
        raise EdgetrackError(f"--device {name}: expected cpu, cuda, cuda:N or auto")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (AVX512-BF16 or AMX): there bf16 autocast is
    faster; elsewhere (AVX2 machines such as AMD Zen 3) it is emulated and slower than fp32."""
    from edgetrack.io import cpu_flags

    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


CPU_AMP_ENV = "EDGETRACK_CPU_AMP"


def cpu_default_amp() -> bool:
    """Whether a CPU run with ``amp`` unset uses bf16 autocast: ``$EDGETRACK_CPU_AMP`` ``on`` or
    ``off``; unset or ``auto``, only on CPUs with native bf16 (:func:`cpu_has_native_bf16`). ``off``
    makes CPU training numerically the same on every CPU (fp32), e.g. to compare with numbers
    recorded on another machine."""
    value = os.environ.get(CPU_AMP_ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return cpu_has_native_bf16()
    if value in ("on", "1", "true"):
        return True
    if value in ("off", "0", "false"):
        return False
    from edgetrack.errors import EdgetrackError

    raise EdgetrackError(f"{CPU_AMP_ENV}={value!r}: expected on, off or auto")


def autocast_for(sched: "Schedule", device: torch.device) -> tuple[object, torch.amp.GradScaler | None]:
    """(autocast context factory, grad scaler or None): bf16 on CUDA where supported, else fp16
    with a scaler; on the CPU bf16 when ``amp`` is True, or when it is None and
    :func:`cpu_default_amp` says so; else full fp32."""
    import contextlib

    if device.type == "cuda" and sched.amp is not False:
        if torch.cuda.is_bf16_supported():
            return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
        return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")
    if device.type == "cpu" and (sched.amp or (sched.amp is None and cpu_default_amp())):
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), None
    return contextlib.nullcontext, None


def param_groups(model: nn.Module, sched: Schedule, only: Callable[[str], bool] | None = None) -> list[dict]:
    """Trainable parameters in two groups (reference): heads at ``lr``, backbone at
    ``lr * backbone_lr_mult``. ``only(name)`` keeps a subset (the score stage)."""
    heads, backbone = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or (only is not None and not only(name)):
            continue
        (backbone if "backbone" in name else heads).append(p)
    groups = [{"params": heads, "base_lr": sched.lr}]
    if backbone:
        groups.append({"params": backbone, "base_lr": sched.lr * sched.backbone_lr_mult})
    return [g for g in groups if g["params"]]


def resume_path(out: Path) -> Path:
    """Where a run keeps its last step checkpoint (removed once ``out`` is written)."""
    return out.with_name(out.stem + ".resume" + (out.suffix or ".pth"))


def best_path(out: Path) -> Path:
    """Where a run keeps its best checkpoint by validation AUC (weights only)."""
    return out.with_name(out.stem + ".best" + (out.suffix or ".pth"))


class WeightAverage:
    """An exponential moving average of ``model``'s floating-point parameters and buffers
    (``Schedule.ema``), kept on the model's device and updated in one fused call a step."""

    def __init__(self, model: nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None):
        self.decay = float(decay)
        # the model's own tensors (its parameters are updated in place, so these stay its weights)
        named = {n: t.detach() for n, t in model.state_dict().items() if t.is_floating_point()}
        self.names, self.live = list(named), list(named.values())
        self.avg = [t.clone() for t in self.live]
        if state is not None:
            missing = set(self.names) - set(state)
            if missing:
                raise KeyError(f"weight average: no {sorted(missing)[:3]} in the saved average")
            torch._foreach_copy_(self.avg, [state[n].to(t.device) for n, t in zip(self.names, self.avg)])

    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.avg, self.live, 1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.avg))

    @contextlib.contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own ones again after."""
        saved = [t.clone() for t in self.live]
        torch._foreach_copy_(self.live, self.avg)
        try:
            yield
        finally:
            torch._foreach_copy_(self.live, saved)

    def copy_to_model(self) -> None:
        torch._foreach_copy_(self.live, self.avg)


@dataclass
class Validation:
    """Validation inside the loop: ``run(model)`` -> numbers (``val_auc`` among them) every
    ``every`` steps from step ``start``; ``checkpoint()`` gives the checkpoint to keep when
    the AUC is the best so far (written to :func:`best_path`)."""

    run: Callable[[nn.Module], dict[str, float]]
    every: int
    checkpoint: Callable[[list[dict]], dict]
    start: int = 0


def run_steps(model: nn.Module, batches: Callable[[int], dict[str, torch.Tensor]], step_fn: StepFn,
              sched: Schedule, out: Path, stage: str, groups: list[dict], extra: dict | None = None,
              progress: Progress | None = None, resume: bool = True,
              validation: Validation | None = None) -> list[dict]:
    """Train ``model`` for ``sched.steps`` steps. ``batches(k)`` gives batch ``k``;
    ``step_fn(batch, k)`` returns the loss and the numbers to log. Every
    ``checkpoint_every`` steps the model, optimiser and history go to ``resume_path(out)``
    (atomically); a later call picks up from there. With ``validation``, the tracker runs over
    the validation sequences every ``validation.every`` steps and the best checkpoint by AUC is
    kept beside ``out``. With ``sched.ema`` a weight average (:class:`WeightAverage`) is kept:
    validation runs on the raw and on the averaged weights, the best checkpoint is whichever
    did best, and the model ends holding the average unless the raw weights did better at the
    last validation. ``progress(done, steps, numbers)``
    is called every step with the numbers of the last log line (read back from the device only
    then). Returns the history (one record per logged step, plus one per validation).

    Under ``torchrun`` the model trains in DistributedDataParallel: ``step_fn`` is then called as
    ``step_fn(batch, k, net=wrapped)`` and must run its forward through ``net``; ``batches`` makes
    only this rank's slice when it has a ``part`` attribute (:class:`training.data.BatchStream`),
    else its batch is sliced here. Rank 0 alone writes files and validates."""
    if sched.threads:
        torch.set_num_threads(sched.threads)
    device = sched.torch_device()
    dist_on = distributed.setup(device)
    world = distributed.world_size() if dist_on else 1
    lo, hi = distributed.rank_slice(sched.batch_size) if dist_on else (0, sched.batch_size)
    share = (hi - lo) * world / sched.batch_size  # loss weight: DDP averages over ranks
    main = distributed.is_main()
    if dist_on:
        if hasattr(batches, "part"):
            batches.part = (lo, hi)
        else:
            full = batches
            batches = lambda k: {n: v[lo:hi] if isinstance(v, torch.Tensor) else v  # noqa: E731
                                 for n, v in full(k).items()}
    model.to(device)
    autocast, scaler = autocast_for(sched, device)
    log.info("%s: training on %s%s%s", stage, device, "" if autocast.__name__ == "nullcontext" else " with mixed precision",
             f", process {distributed.rank()} of {world} (samples {lo}..{hi - 1} of each batch)" if dist_on else "")
    params = [p for g in groups for p in g["params"]]
    # on CUDA the fused AdamW: one kernel for all parameters instead of several per tensor (a
    # small model's step is otherwise bound by kernel launches)
    opt = torch.optim.AdamW(groups, lr=sched.lr, weight_decay=sched.weight_decay, fused=device.type == "cuda")
    history: list[dict] = []
    start, spent = 0, 0.0  # spent: training seconds before this call (resumed runs)
    best_auc = -1.0
    rpath = resume_path(out)
    saved_avg = None
    if resume and rpath.is_file():
        state = read_checkpoint(rpath)
        if state.get("stage") == stage and state.get("resume_steps") == sched.steps:
            saved_avg = state.get("ema")
            model.load_state_dict(state["net"])
            model.to(device)
            opt.load_state_dict(state["optimizer"])
            start, history = int(state["step"]), list(state["history"])
            best_auc = float(state.get("best_auc", -1.0))
            spent = float(state.get("elapsed", 0.0))
            log.info("%s: resuming at step %d of %d from %s", stage, start, sched.steps, rpath)
        else:
            log.warning("%s: ignoring %s (another stage or schedule)", stage, rpath)
    avg, end_with_average = None, True
    if sched.ema > 0:
        if start and saved_avg is None:
            log.warning("%s: %s holds no weight average; it starts from the resumed weights", stage, rpath)
        avg = WeightAverage(model, sched.ema, saved_avg)
    net = distributed.wrap(model, device)
    distributed.barrier()  # every rank has read the resume file before rank 0 may replace it
    model.train()
    t0, seen = time.perf_counter(), 0
    clock = t0 - spent  # training time = now - clock (validation time is added to clock)
    # The step's numbers stay on the device until they are logged: reading one back each step
    # (``float(t)``, ``if not isfinite``) makes the host wait for the GPU every step, so a small
    # model's kernels are launched and run in turn instead of the host queueing ahead.
    running: dict[str, torch.Tensor] = {}
    nonfinite = torch.zeros((), dtype=torch.int64, device=device)  # steps with a NaN/inf loss
    checked = start  # steps up to here are known to have finite losses
    logged: dict[str, float] = {}  # the last logged numbers (for ``progress``)

    def check_finite(upto: int) -> None:
        nonlocal checked
        if int(nonfinite) > 0:  # before any checkpoint of weights that a NaN step may have spoilt
            raise FloatingPointError(f"{stage}: the loss was not finite in {int(nonfinite)} of steps {checked + 1}..{upto}")
        checked = upto

    stop = sched.steps if sched.max_steps is None else min(sched.steps, start + sched.max_steps)
    timed = sched.time_budget is not None
    for k in range(start, stop):
        now = time.perf_counter() - clock
        if timed:
            now = distributed.agree(now, device)  # rank 0's clock rules lr and the end
        f = sched.lr_factor(k, now)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        batch = batches(k)
        if isinstance(batch, dict):
            batch = {n: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for n, v in batch.items()}
        with autocast():
            loss, stats = step_fn(batch, k, net=net) if net is not model else step_fn(batch, k)
        loss = loss.float()
        nonfinite += (~torch.isfinite(loss.detach())).to(torch.int64)
        opt.zero_grad(set_to_none=True)
        scaled = loss * share if dist_on else loss
        if scaler is not None:
            scaler.scale(scaled).backward()
            scaler.unscale_(opt)
        else:
            scaled.backward()
        if sched.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, sched.grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if avg is not None:
            avg.update(k)
        for name, v in {"loss": loss, **stats}.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v), device=device)
            if dist_on:
                v = v * (hi - lo)
            running[name] = running[name] + v if name in running else v
        seen += 1
        done = k + 1
        elapsed = time.perf_counter() - clock
        if timed:
            elapsed = distributed.agree(elapsed, device)
        last = done == stop or (timed and elapsed >= sched.time_budget)
        if done % sched.log_every == 0 or last:
            check_finite(done)
            names = sorted(running)
            sums = dict(zip(names, torch.stack([running[n] for n in names]).tolist()))  # one read-back
            # the batch means of every rank's numbers, weighted by its share: what one process logs
            if dist_on:
                sums = dict(zip(names, distributed.sum_all([sums[n] for n in names], device)))
                sums = {n: v / sched.batch_size for n, v in sums.items()}
            logged = {n: v / seen for n, v in sums.items()}
            rec = {"stage": stage, "step": done, "lr": opt.param_groups[0]["lr"], **logged,
                   "sec_per_step": (time.perf_counter() - t0) / seen,
                   "samples": done * sched.batch_size,
                   "samples_per_sec": seen * sched.batch_size / max(time.perf_counter() - t0, 1e-9),
                   "elapsed": elapsed}
            history.append(rec)
            log.info("%s step %d/%d  %s", stage, done, sched.steps,
                     "  ".join(f"{n} {v:.4g}" for n, v in rec.items() if n not in ("stage", "step", "samples")))
            running, seen, t0 = {}, 0, time.perf_counter()
        if progress is not None:
            progress(done, sched.steps, logged)
        if validation is not None and validation.every > 0 and done >= validation.start and (
                done % validation.every == 0 or last):
            check_finite(done)
            t_val = time.perf_counter()
            if main:  # rank 0 validates and keeps the best; the others wait at the barrier
                # with a weight average both the averaged and the raw weights are validated (an
                # average is not better by rule: on the CPU from v3 it was 0.005 below), and
                # whichever is better becomes the best checkpoint (a tie: the average)
                kinds = ([("average", avg.applied)] if avg is not None else []) + [("raw", contextlib.nullcontext)]
                aucs = {}
                for which, weights in kinds:
                    t_one = time.perf_counter()
                    with weights():
                        v = validation.run(model)
                        model.train()
                        rec = {"stage": stage, "step": done, **v, **({"weights": which} if avg is not None else {})}
                        history.append(rec)
                        aucs[which] = v["val_auc"]
                        improved = v["val_auc"] > best_auc
                        if improved:
                            best_auc = v["val_auc"]
                            save_atomic(validation.checkpoint(history), best_path(out))
                    log.info("%s step %d/%d  validation AUC %.4f%s (best %.4f%s)  P@20 %.4f  %.0f s", stage, done,
                             sched.steps, v["val_auc"], f" ({which} weights)" if avg is not None else "", best_auc,
                             ", saved" if improved else "", v.get("val_p20", float("nan")), time.perf_counter() - t_one)
                if avg is not None:
                    end_with_average = aucs["average"] >= aucs["raw"]
            distributed.barrier()
            t0 += time.perf_counter() - t_val  # validation time is not training time
            clock += time.perf_counter() - t_val
        if last:
            if done < sched.steps and timed and elapsed >= sched.time_budget:
                log.info("%s: time budget of %.0f s spent after %d of %d steps", stage, sched.time_budget, done, sched.steps)
            elif done < sched.steps:
                log.info("%s: stopped after %d steps (max steps), %d of %d done", stage, done - start, done, sched.steps)
            break
        if done % sched.checkpoint_every == 0 and main:
            check_finite(done)
            save_atomic({"net": model.state_dict(), "optimizer": opt.state_dict(), "stage": stage,
                         "step": done, "resume_steps": sched.steps, "history": history, "best_auc": best_auc,
                         "elapsed": time.perf_counter() - clock, "schedule": asdict(sched),
                         **({"ema": avg.state_dict()} if avg is not None else {}), **(extra or {})}, rpath)
    if avg is not None and end_with_average:  # the stage's result: the average, unless the raw
        avg.copy_to_model()                      # weights did better at the last validation
    close = getattr(batches, "close", None)
    if close is not None:
        close()
    return history


def finish(out: Path, ckpt: dict) -> Path:
    """Write the stage's final checkpoint atomically and drop its resume file (rank 0 only;
    the other ranks wait until it is there)."""
    if distributed.is_main():
        save_atomic(ckpt, out)
        resume_path(out).unlink(missing_ok=True)
        log.info("wrote %s (%s, stage %s)", out, ckpt.get("arch"), ckpt.get("stage"))
    distributed.barrier()
    return out


def describe_device(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu (AMD EPYC ..., 2 threads)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = torch.get_num_threads()
    return f"cpu ({name}, {n} thread{'s' if n != 1 else ''})"


def throughput(history: list[dict], stage: str, sched: Schedule) -> dict:
    """Samples/s of a short run of ``stage`` (its last logged window, which leaves out the
    first steps' warm-up when there are two) and the seconds all of ``sched.steps`` would take."""
    recs = [h for h in history if h.get("stage") == stage and "samples_per_sec" in h]
    if not recs:
        from edgetrack.errors import EdgetrackError

        raise EdgetrackError(f"{stage}: no logged step to measure")
    rate = float(recs[-1]["samples_per_sec"])
    return {"steps": int(recs[-1]["step"]), "samples_per_sec": rate,
            "estimate_s": sched.steps * sched.batch_size / max(rate, 1e-9),
            "device": describe_device(sched.torch_device()), "processes": distributed.world_size()}
