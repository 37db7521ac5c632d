"""Benchmarks: each module is runnable with `python -m bench.<name> --out PATH.json`."""

import json
from pathlib import Path


def write_json(path, doc: dict) -> None:
    """Write a bench result to ``path``, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1))


def emit(result: dict, out=None) -> None:
    """Print a bench's JSON result and write it to ``out`` (a path) when given."""
    print(json.dumps(result, indent=2))
    if out:
        write_json(out, result)
