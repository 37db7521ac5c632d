"""A private ``redis-server`` child process for Feast's Redis online store.

``stockray features --online redis`` starts one (``redis-server --port P --bind 127.0.0.1
--save '' --appendonly no --daemonize no``: loopback only, nothing persisted, the online store
is rebuilt by materialization) unless a server already answers on the port. It is stopped by
its PID, never by name. Install the binary with ``apt-get install -y redis-server``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

DEFAULT_REDIS_PORT = 6379


def redis_binary() -> str | None:
    """Path of ``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def redis_ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on host:port."""
    import redis

    try:
        return bool(redis.Redis(host=host, port=port, socket_timeout=timeout,
                                socket_connect_timeout=timeout).ping())
    except Exception:  # noqa: BLE001 — any failure means "not reachable"
        return False


class RedisServer:
    """Start/stop one loopback ``redis-server``; usable as a context manager.

    Args:
        port: TCP port on 127.0.0.1.
        workdir: the server's working directory and log location.
        detach: start it in its own session so it outlives this process (the CLI's choice:
            serving reads the online store after ``stockray features`` returns).
    """

    def __init__(self, port: int = DEFAULT_REDIS_PORT, workdir: Path | None = None,
                 detach: bool = False):
        self.port = port
        self.workdir = Path(workdir) if workdir else None
        self.detach = detach
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH: apt-get install -y redis-server")
        cwd = self.workdir or Path.cwd()
        cwd.mkdir(parents=True, exist_ok=True)
        log = open(cwd / f"redis-{self.port}.log", "ab")  # noqa: SIM115 — owned by the child
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(cwd)],
            stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=self.detach)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see "
                                   f"{cwd / f'redis-{self.port}.log'}")
            if redis_ping(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on {self.address} in {timeout}s")

    def stop(self) -> None:
        """Terminate the child by PID (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> RedisServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
