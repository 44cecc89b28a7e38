"""Start-up time: seconds from the command to the first tracked box, first and second start.

``edgetrack run`` compiles the bundle's models through OpenVINO's model cache (``CACHE_DIR``,
``--model-cache``, default ``~/.cache/edgetrack/openvino``). The first start with an empty
cache compiles and stores the compiled models; a second start loads them and compiles nothing.
This script starts the real command in a subprocess, with a fresh cache folder, and watches its
``--output-boxes`` file: the first tracked box is the file's second line (the first line is
the init box), written and flushed as soon as the box is known. Also timed, in this process:
building the engine (``OpenVINOEngine``: load + compile, or load from the cache).

    python benchmarks/startup_bench.py --json /tmp/startup.json
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _common import BOXES, CLIP, EDGETRACK, default_model, machine, write_json


def seconds_to_first_box(model: Path, cache: str, work: Path) -> float:
    """Run ``edgetrack run`` once; seconds from the start of the process to the first box."""
    boxes = work / "boxes.txt"
    part = work / "boxes.part.txt"
    boxes.unlink(missing_ok=True)
    cmd = [str(EDGETRACK), "run", "-m", str(model), "--video", str(CLIP), "--init-box", ",".join(map(str, BOXES[0])),
           "--no-display", "--max-frames", "3", "--output-boxes", str(boxes)]
    env = dict(os.environ, EDGETRACK_MODEL_CACHE=cache)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while first is None:
        for f in (part, boxes):
            try:
                if f.read_text().count("\n") >= 2:
                    first = time.perf_counter() - t0
                    break
            except FileNotFoundError:
                pass
        if first is None and proc.poll() is not None:
            raise SystemExit(f"edgetrack run ended ({proc.returncode}) before a box: {proc.stderr.read()}")
        time.sleep(0.002)
    proc.wait(timeout=120)
    return first


def engine_seconds(model: Path, cache: str) -> tuple[float, dict]:
    from edgetrack.engine import OpenVINOEngine

    t0 = time.perf_counter()
    engine = OpenVINOEngine(model, model_cache=False if cache == "off" else cache)
    return time.perf_counter() - t0, engine.loaded_from_cache


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="bundle folder (default: the bundled default model)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = args.model or default_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work, cache = Path(tmp), str(Path(tmp) / "ov_cache")
        seconds_to_first_box(model, "off", work)  # warm-up: Python and the libraries in the OS file cache
        runs = [("no model cache", "off"), ("first start (empty cache)", cache), ("second start", cache),
                ("third start", cache)]
        for name, c in runs:
            s = seconds_to_first_box(model, c, work)
            rows.append({"run": name, "command_to_first_box_s": round(s, 3)})
            print(f"edgetrack run, {name:26}: {s:6.3f} s to the first box", flush=True)
        blobs = sorted(p.name for p in Path(cache).iterdir())
        cache2 = str(Path(tmp) / "ov_cache_engine")
        for name, c in [("engine, no model cache", "off"), ("engine, empty cache", cache2), ("engine, warm cache", cache2)]:
            s, loaded = engine_seconds(model, c)
            rows.append({"run": name, "engine_s": round(s, 3), "loaded_from_cache": loaded})
            print(f"OpenVINOEngine(), {name:24}: {s:6.3f} s  loaded from cache: {loaded}", flush=True)
    info = machine()
    print(f"cache files after the first start: {blobs}")
    print(f"{info['cpu']}, {info['cores']} cores, load average {info['load_average_1_5_15']}")
    write_json(args.json, {"machine": info, "model": str(model), "cache_files": blobs, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
