"""Soak: 10,000 frames through the library and through ``edgetrack run`` with video output.

* ``--part library``: ``Tracker.track`` on the clip's frames, looped (decoded once, kept in
  memory), sampling this process's RSS and open file descriptors (``/proc/self/fd``).
* ``--part cli``: ``edgetrack run --frames DIR --output-video .. --output-boxes ..`` on a
  folder of 10,000 frames (links to the clip's frames, saved once as JPEG at half size so
  that decoding and encoding do not dominate), sampling the command's RSS and descriptors from
  outside (``/proc/<pid>``).

Checks: RSS growth from the first sample after warm-up (10% of the frames) to the last below
5%, no NaN box, descriptors at the end no more than after warm-up. Example:

    python benchmarks/soak.py --part library --json /tmp/soak_library.json
    python benchmarks/soak.py --part cli --json /tmp/soak_cli.json
"""
from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
import time
from pathlib import Path

from _common import BOXES, CLIP, EDGETRACK, default_model, machine, open_fds, rss_mb, write_json

MAX_GROWTH = 0.05


def clip_frames() -> list:
    from edgetrack.sources import VideoSource

    src = VideoSource(CLIP)
    try:
        return list(src)
    finally:
        src.close()


def verdict(samples: list[dict], frames: int, nan_boxes: int) -> dict:
    """Growth from the first sample at or after 10% of the frames to the last one."""
    warm = next(s for s in samples if s["frame"] >= frames // 10)
    last = samples[-1]
    growth = (last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"]
    ok = growth < MAX_GROWTH and nan_boxes == 0 and last["fds"] <= warm["fds"]
    return {"rss_after_warmup_mb": warm["rss_mb"], "rss_last_mb": last["rss_mb"], "growth": round(growth, 4),
            "rss_max_mb": max(s["rss_mb"] for s in samples), "fds_after_warmup": warm["fds"], "fds_last": last["fds"],
            "nan_boxes": nan_boxes, "pass": ok}


def soak_library(model: Path, frames_n: int) -> dict:
    from edgetrack.tracker import Tracker

    frames = clip_frames()
    tracker = Tracker(model)
    tracker.init(frames[0], BOXES[0])
    samples, nan_boxes = [], 0
    t0 = time.perf_counter()
    for i in range(1, frames_n):
        box, score = tracker.track(frames[i % len(frames)])
        nan_boxes += not all(math.isfinite(v) for v in (*box, score))
        if i % 500 == 0 or i == frames_n - 1:
            samples.append({"frame": i + 1, "s": round(time.perf_counter() - t0, 2), "rss_mb": round(rss_mb(), 1),
                            "fds": open_fds()})
    return {"part": "library", "frames": frames_n, "seconds": round(time.perf_counter() - t0, 1),
            "samples": samples, **verdict(samples, frames_n, nan_boxes)}


def soak_cli(model: Path, frames_n: int, work: Path) -> dict:
    import cv2

    src = work / "clip"
    src.mkdir()
    for k, f in enumerate(clip_frames()):
        half = cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(src / f"{k:03d}.jpg"), cv2.cvtColor(half, cv2.COLOR_RGB2BGR))
    clip = sorted(src.iterdir())
    folder = work / "frames"
    folder.mkdir()
    for i in range(frames_n):
        (folder / f"{i:06d}.jpg").symlink_to(clip[i % len(clip)])
    boxes, video = work / "out" / "boxes.txt", work / "out" / "tracked.mp4"
    init = ",".join(str(v / 2) for v in BOXES[0])
    cmd = [str(EDGETRACK), "run", "-m", str(model), "--frames", str(folder), "--init-box", init, "--no-display",
           "--output-boxes", str(boxes), "--output-video", str(video)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = boxes.with_name("boxes.part.txt")
    samples = []
    while proc.poll() is None:
        time.sleep(1.0)
        try:
            done = part.read_text().count("\n")
            samples.append({"frame": done, "s": round(time.perf_counter() - t0, 1), "rss_mb": round(rss_mb(proc.pid), 1),
                            "fds": open_fds(proc.pid)})
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            pass  # not started writing yet, or just ended
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"edgetrack run failed ({proc.returncode}): {err}")
    lines = boxes.read_text().splitlines()
    nan_boxes = sum(not all(math.isfinite(float(v)) for v in ln.split(",")) for ln in lines)
    cap = cv2.VideoCapture(str(video))
    video_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    result = {"part": "cli", "frames": frames_n, "seconds": round(time.perf_counter() - t0, 1),
              "command": " ".join(cmd), "stdout": out.strip(), "box_lines": len(lines), "video_frames": video_frames,
              "samples": samples, **verdict(samples, frames_n, nan_boxes)}
    result["pass"] = result["pass"] and len(lines) == frames_n and video_frames == frames_n
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("library", "cli"), required=True)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--model", type=Path, help="bundle folder (default: the bundled default model)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = args.model or default_model()
    if args.part == "library":
        res = soak_library(model, args.frames)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            res = soak_cli(model, args.frames, Path(tmp))
    info = machine()
    print(f"{res['part']}: {res['frames']} frames in {res['seconds']} s; RSS {res['rss_after_warmup_mb']} MB after "
          f"warm-up -> {res['rss_last_mb']} MB at the end (growth {100 * res['growth']:.2f}%, max "
          f"{res['rss_max_mb']} MB); fds {res['fds_after_warmup']} -> {res['fds_last']}; NaN boxes "
          f"{res['nan_boxes']}; {'PASS' if res['pass'] else 'FAIL'}")
    print(f"{info['cpu']}, {info['cores']} cores, load average {info['load_average_1_5_15']}")
    write_json(args.json, {"machine": info, "model": str(model), **res})
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
