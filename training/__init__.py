"""Torch training pipeline for MixFormerV2 (models, distillation)."""
