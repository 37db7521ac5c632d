"""Model lifecycle jobs as plain functions: the retrain step graph and its resumable state,
the walk-forward evaluation job (fold map, MLflow logging, scores attached to registry
versions). `ray_apps.retrain` / `ray_apps.evaluate` only parse arguments, connect Ray and call
these.

Modules: ``config`` (what a run is asked to do), ``state`` (the state file and data hashes),
``steps`` (one function per retrain step and their dependency keys), ``run`` (the step loop),
``evaluation`` (walk-forward on Ray tasks, MLflow run, registry attachment, the evaluate job).
Imports features and training only; never ray_apps.
"""
