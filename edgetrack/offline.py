"""No network calls: OpenVINO's usage telemetry stays off in edgetrack's processes.

``import openvino`` imports ``openvino.tools.ovc``, which starts ``openvino_telemetry``: it
sends a Google Analytics event from a thread pool (``www.google-analytics.com``) and writes
``~/intel/openvino_ga_cid`` and ``~/intel/stats``, unless the user opted out with
``opt_in_out --opt_out`` (a ``~/intel/openvino_telemetry`` file holding ``0``) or a CI
variable is set. NNCF uses the same package. This installed version reads no environment
variable to turn it off, so an offline tool cannot rely on the user's opt-out.

Both OpenVINO (``openvino/tools/ovc/telemetry_utils.py``, ``convert_impl.py``, ``utils.py``)
and NNCF (``nncf/telemetry/wrapper.py``) fall back to their own no-op stubs when
``import openvino_telemetry`` raises ``ImportError``. Marking the module as absent in
``sys.modules`` before the first ``import openvino`` takes that path for this process only:
no user setting is changed, and other processes are not affected.
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

TELEMETRY_MODULE = "openvino_telemetry"


def disable_openvino_telemetry() -> bool:
    """Make ``openvino_telemetry`` unimportable in this process (OpenVINO and NNCF then use
    their no-op stubs). Returns False when it was imported already (too late to stop it)."""
    mod = sys.modules.get(TELEMETRY_MODULE, "absent")
    if mod is None:
        return True
    if mod != "absent":
        log.debug("openvino_telemetry was imported before edgetrack could turn it off")
        return False
    sys.modules[TELEMETRY_MODULE] = None  # type: ignore[assignment]  # import -> ImportError
    return True
