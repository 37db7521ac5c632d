"""Training frames, time-ordered splits, trainers, evaluation and baselines, MLflow registry,
ONNX export. Text: ``sentiment_corpus``/``sentiment_templates`` (the project-written corpus),
``sentiment`` (the fine-tuned encoder), ``sentiment_eval`` (baselines, report),
``sentiment_export`` (ONNX fp32 + static int8 bundle), ``sentiment_run`` (Tune, seeds, registry).

May import: ``features``, ``kernels``. Never reads raw sources.
"""
