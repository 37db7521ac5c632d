"""Free loopback TCP ports for tests, benches and dev runs that start several servers."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (32768-60999 here) and above Ray's worker ports
# (10002-19999): a port bound to 0 comes from the ephemeral range, where any outgoing
# connection or Ray process may take it between our check and the server's bind.
PORT_RANGE = (20000, 32767)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback), outside the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        p = rng.randrange(*PORT_RANGE)
        if _bindable(p):
            return p
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def free_port_pair() -> int:
    """A port p with p and p+1 both free (direct ingress puts Serve's proxy on p+1)."""
    for _ in range(50):
        p = free_port()
        if _bindable(p + 1):
            return p
    raise RuntimeError("no free port pair")
