"""Thin Ray Serve wrappers, one deployment per module, around the stage objects in ``serving``."""
