"""Benchmarks: each module is runnable with `python -m bench.<name> --out PATH.json`."""


def emit(result: dict, out=None) -> None:
    """Print a bench's JSON result and write it to ``out`` (a path) when given."""
    import json
    from pathlib import Path

    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
