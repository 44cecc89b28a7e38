"""What the sample scripts share: the checkout, echoing and running an ``edgetrack`` command,
and the ``--out`` folder argument."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EDGETRACK = Path(sys.executable).with_name("edgetrack")


def sh(*args) -> None:
    print("$", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True)


def out_folder(doc: str | None) -> Path:
    """Parse ``--out`` (default ``REPO/out``) for a sample whose docstring is ``doc``; the folder exists after."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    out: Path = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    return out
