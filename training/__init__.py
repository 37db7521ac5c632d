"""Training frames, time-ordered splits, trainers, evaluation and baselines, MLflow registry,
ONNX export.

May import: ``features``, ``kernels``. Never reads raw sources.
"""
