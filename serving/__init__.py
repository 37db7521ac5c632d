"""The prediction service: the ``.proto``, pure stage objects (feature lookup, scorer,
explainer), Ray Serve deployments (one per module), the typed app builder, and clients.

May import: ``features`` (online store reader) and model artifacts that ``training`` exported;
never training code.
"""
