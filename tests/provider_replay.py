"""A local HTTP server that replays provider responses (tests only; binds 127.0.0.1, free port).

Routes map a path to a list of steps consumed in order; the last step repeats. A step is a
:class:`Reply` or a callable ``(query: dict[str, str]) -> Reply`` (to answer by the request,
e.g. a Yahoo chart cut to ``period1..period2``). Every request is recorded with its path,
query, headers and arrival time, so tests assert what the client *asked for*.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "providers"


def fixture(name: str):
    """A fixture's JSON (``.json``) or text."""
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


@dataclass
class Reply:
    status: int = 200
    body: object = b""  # bytes, str, or anything JSON-serialisable
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (timeouts)
    content_type: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain"
        return json.dumps(self.body).encode(), self.content_type or "application/json"


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    t: float
    headers: dict[str, str] = field(default_factory=dict)


class ReplayServer:
    """Start with ``with ReplayServer() as srv:``; ``srv.url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply | Callable[[dict], Reply]]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                with outer._lock:
                    outer.seen.append(Seen(parts.path, query, time.monotonic(), dict(self.headers)))
                    steps = outer.routes.get(parts.path)
                    step = None
                    if steps:
                        step = steps.pop(0) if len(steps) > 1 else steps[0]
                reply = Reply(404, {"error": f"no route {parts.path}"}) if step is None else (
                    step(query) if callable(step) else step)
                if reply.delay:
                    time.sleep(reply.delay)
                body, ctype = reply.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, path: str, *steps) -> None:
        self.routes[path] = list(steps)

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def yahoo_window(doc: dict, last_day: str | None = None):
    """A Yahoo route step answering ``period1..min(period2, last_day)`` of ``doc`` like Yahoo
    does (arrays and events cut to the window)."""
    import pandas as pd

    def step(query: dict) -> Reply:
        res = json.loads(json.dumps(doc))
        r = res["chart"]["result"][0]
        lo = int(query.get("period1", 0))
        hi = int(query.get("period2", 2**40))
        if last_day:
            hi = min(hi, int(pd.Timestamp(last_day, tz="UTC").timestamp()) + 86399)
        keep = [i for i, t in enumerate(r["timestamp"]) if lo <= t <= hi]
        r["timestamp"] = [r["timestamp"][i] for i in keep]
        q = r["indicators"]["quote"][0]
        for k in q:
            q[k] = [q[k][i] for i in keep]
        a = r["indicators"]["adjclose"][0]
        a["adjclose"] = [a["adjclose"][i] for i in keep]
        for kind in ("splits", "dividends"):
            r["events"][kind] = {k: v for k, v in r["events"][kind].items()
                                 if lo <= v["date"] <= hi}
        return Reply(200, res)
    return step
