"""Which addresses a set of processes listens on (from /proc/net/tcp{,6} and their fds)."""

from __future__ import annotations

import os
from pathlib import Path

LISTEN = "0A"


def _hex_addr(text: str) -> str:
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw[::-1])
    else:
        words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
        flat = b"".join(words)
        if flat[:12] == b"\0" * 10 + b"\xff\xff":
            ip = "::ffff:" + ".".join(str(b) for b in flat[12:])
        else:
            ip = ":".join(flat[i : i + 2].hex() for i in range(0, 16, 2))
    return f"{ip}:{int(port, 16)}"


def listening_addresses(pgids: set[int]) -> dict[int, list[str]]:
    """pid -> listening addresses, for every live process in the given process groups."""
    inodes: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == LISTEN:
                inodes[f[9]] = _hex_addr(f[1])
    out: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) not in pgids:
                continue
            fds = list((entry / "fd").iterdir())
        except (ProcessLookupError, PermissionError, FileNotFoundError, OSError):
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                out.setdefault(pid, []).append(inodes[link[8:-1]])
    return out


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return (
        host.startswith("127.") or host.startswith("::ffff:127.") or host == "0000:0000:0000:0000:0000:0000:0000:0001"
    )
