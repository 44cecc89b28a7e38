"""Published checkpoints -> OpenVINO model bundles (FP32/FP16, NNCF INT8)."""
