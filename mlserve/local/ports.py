"""Loopback ports for the local target: free ones picked at deploy time, fixed ones checked."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from mlserve.errors import TargetError

HOST = "127.0.0.1"


def free_port(avoid: Iterable[int] = ()) -> int:
    """A port nobody listens on now (the kernel's pick for port 0), not in ``avoid``."""
    taken = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise TargetError("could not find a free port on 127.0.0.1")


def port_in_use(port: int) -> bool:
    """True when binding 127.0.0.1:port fails (someone listens there or holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # No SO_REUSEADDR: a port in TIME_WAIT is fine for a server that sets it
        # (uvicorn, prometheus do), so set it too and only trip on a real listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def check_free(port: int, key: str) -> None:
    """Raise a TargetError naming the manifest key when a fixed port is taken."""
    if port_in_use(port):
        raise TargetError(
            f"port {port} on 127.0.0.1 is already in use ({key} = {port})",
            hint=f"stop what listens there (e.g. `ss -ltnp 'sport = :{port}'`), or change or remove {key}",
        )
