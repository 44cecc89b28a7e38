"""edgetrack: MixFormerV2 visual object tracking on Intel CPUs and iGPUs with OpenVINO.

This package is the torch-free base (crop geometry, datasets, metrics, the model bundle)
and the runtime. It never imports torch, nncf, ``training`` or ``conversion`` at import time.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
