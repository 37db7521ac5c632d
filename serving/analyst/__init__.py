"""The Gradio analyst app (`stockray app`): forecasts over the real gRPC service, charts,
evaluation reports and data quality read from the data directory.

- `serving.analyst.app`: `build_app` / `launch` and the testable `AnalystSession` callbacks.
- `serving.analyst.charts`: price + indicators, SHAP waterfall, feature history figures.
- `serving.analyst.data`: read-only views of the lake, offline store and reports.
"""
