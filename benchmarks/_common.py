"""What the benchmark scripts share: the clip, its boxes, the default model, the machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(REPO))
CLIP = REPO / "samples" / "data" / "vtest_pedestrian.mp4"  # 100 frames, 768x576, 10 fps (see samples/demo.py)
# x, y, w, h in the clip's first frame: the man in the dark coat (samples/demo.py), the man on
# the left, the man in the middle at the back, the white van
BOXES = [(638, 240, 47, 82), (252, 220, 32, 88), (500, 157, 30, 75), (652, 44, 72, 54)]
EDGETRACK = Path(sys.executable).with_name("edgetrack")


def default_model() -> Path:
    """The bundled default model's bundle folder (built on first use; needs edgetrack[train])."""
    from edgetrack.default_model import default_bundle

    return default_bundle()


def cpu_model() -> str:
    """``Model name`` from ``lscpu`` (else OpenVINO's name of the CPU)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from edgetrack.bench import cpu_name

    return cpu_name()


def machine() -> dict:
    """The CPU, its cores and the load average when the benchmark ran (a shared machine shows)."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}


def pct(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (``/proc/<pid>/status`` VmRSS), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"json: {path}")
