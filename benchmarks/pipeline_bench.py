"""The real-time pipeline on a stand-in camera: sync against async, 1 target against 4.

The clip is played at its own frame rate (``--speed 1``) by ``PacedSource``, which is a live
source: frames come whether the tracker is ready or not, and a frame that a newer one replaces
before it was taken is dropped, as with a camera. Each configuration gets a fresh source and
the same compiled model (through the model cache). Per configuration:

* latency: capture (the frame handed out by the source) -> all boxes of the frame known, p50/p90;
* output FPS: frames with boxes per second, first to last;
* dropped: frames the tracker never saw.

Each frame's result is drawn (boxes on a BGR copy, as for a window) on the main thread, as
``edgetrack run`` does with a window. Example:

    python benchmarks/pipeline_bench.py --json /tmp/pipeline.json            # native 10 fps
    python benchmarks/pipeline_bench.py --speed 10 --loops 3                 # 100 fps: the CPU is the limit
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import BOXES, CLIP, default_model, machine, pct, write_json


def run_one(engine, clip: Path, boxes, mode: str, speed: float, loops: int) -> dict:
    from edgetrack.pipeline import Pipeline
    from edgetrack.runner import draw
    from edgetrack.sources import PacedSource, VideoSource

    source = PacedSource(VideoSource(clip), speed=speed, loops=loops)
    pipeline = Pipeline(engine, mode=mode)
    pipeline.add_stream(source, boxes)
    done: list[float] = []

    def on_result(r) -> None:
        draw(r.image, r.boxes, r.scores)
        done.append(time.perf_counter())

    (stats,) = pipeline.run(on_result)
    span = done[-1] - done[1] if len(done) > 2 else float("nan")
    lat = stats.latency_ms
    return {"mode": mode, "targets": len(boxes), "source_fps": source.fps, "captured": stats.captured,
            "tracked": stats.frames, "dropped": stats.dropped,
            "latency_ms": {"p50": round(pct(lat, 50), 2), "p90": round(pct(lat, 90), 2)},
            "output_fps": round((len(done) - 2) / span, 2) if span == span else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="bundle folder (default: the bundled default model)")
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--speed", type=float, default=1.0, help="play the clip this many times faster (1: its own rate)")
    ap.add_argument("--loops", type=int, default=1, help="play the clip this many times")
    ap.add_argument("--targets", default="1,4", help="numbers of targets to run (up to 4)")
    ap.add_argument("--modes", default="sync,async")
    ap.add_argument("--device", default="CPU")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from edgetrack.engine import OpenVINOEngine

    model = args.model or default_model()
    engine = OpenVINOEngine(model, device=args.device)
    rows = []
    for n in (int(t) for t in args.targets.split(",")):
        for mode in args.modes.split(","):
            row = run_one(engine, args.clip, BOXES[:n], mode, args.speed, args.loops)
            rows.append(row)
            print(f"{n} target(s) {mode:5}: latency p50 {row['latency_ms']['p50']:7.2f} ms  p90 "
                  f"{row['latency_ms']['p90']:7.2f} ms  output {row['output_fps']:6.2f} FPS  "
                  f"(source {row['source_fps']:.1f} FPS)  tracked {row['tracked']}/{row['captured']}  "
                  f"dropped {row['dropped']}", flush=True)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, load average {info['load_average_1_5_15']}")
    write_json(args.json, {"machine": info, "model": str(model), "clip": str(args.clip), "speed": args.speed,
                           "loops": args.loops, "device": args.device, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
