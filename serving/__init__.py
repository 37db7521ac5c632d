"""The prediction service: the ``.proto``, pure stage objects (feature lookup, scorer,
explainer), Ray Serve deployments (one per module), the typed app builder, and clients.

May import: ``features`` (online store reader) and model artifacts that ``training`` exported,
read through ``training.bundle`` (the bundle format: no training imports); never training code.
The only other ``training`` modules allowed (tests/unit/test_import_graph.py) are torch-only or
plotting-only: ``training.nets`` rebuilds a sequence bundle's net from its ``state.pt`` and
``training.attribution`` explains it with integrated gradients; ``training.plots`` draws the
report figures.

Map: ``lookup``/``scorer``/``explainer`` (stages, no Ray) -> ``modelset`` (models by alias,
hot swap) -> ``service`` (validation, routing, calibration, audit) -> ``deployments/`` (thin
Serve wrappers) -> ``app`` (``build_app(AppArgs)``) -> ``launch`` (``serve_env``,
``start_serve``). ``grpc_server`` runs the same service on bare grpcio; ``client`` calls either.
``history`` reads sequence models' windows from the offline store.
``models`` finds bundles (directories or MLflow aliases); ``calibration`` turns a bundle's
validation residuals into P(up) and conformal intervals; ``audit`` is the hash-chained
append-only log. Access: ``auth`` (API keys, scopes, rate limits, the ``Gate`` every transport
calls first), ``tls`` (dev certificates, gRPC credentials), ``hardening`` (makes Ray Serve's
hard-coded wildcard listeners bind the configured host, with TLS). ``alerts``: rules, sinks and
delivery (``rules``, ``sinks``, ``signing``, ``scan``), and ``alerts.on_event``, which turns
stream events into alerts with a fresh prediction (through ``client``).
Text: ``sentiment_models`` (``SentimentScorer``: a sentiment bundle's tokenizer + ONNX sessions,
no training imports) and ``sentiment_api`` (ScoreText / ScoreTexts checks, responses and where
the scorer runs: ingress replica, Sentiment deployment or split).
"""
