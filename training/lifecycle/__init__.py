"""Model lifecycle jobs as plain functions: training, the walk-forward evaluation, the
retrain step graph with its resumable state, the monitoring pass. `ray_apps.train`,
`ray_apps.evaluate`, `ray_apps.retrain` and `ray_apps.monitor` only parse arguments, connect
Ray and call these.

Modules: ``config`` (what a job is asked to do), ``train`` (LightGBM / sequence training and
registration), ``evaluation`` (walk-forward on Ray tasks, MLflow run, registry attachment,
the evaluate job), ``state`` (the retrain state file and data hashes), ``steps`` (one function
per retrain step and their dependency keys), ``run`` (the retrain step loop), ``monitor``
(one monitoring pass).
Imports features and training only; never ray_apps.
"""
