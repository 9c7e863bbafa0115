"""Probes that tell whether a local service answers: TCP, HTTP and the Kafka protocol."""

from __future__ import annotations

import socket
import struct
import urllib.error
import urllib.request

from shopflow.errors import ShopflowError

PROBE_TIMEOUT_SECONDS = 1.0


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`, or a bare host) as a (host, port) pair."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ShopflowError(f"bad address {address!r}: expected host:port") from None


def port_open(host: str, port: int, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether anything accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get_status(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> int | None:
    """The HTTP status of `GET url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def probe_pubsub(host: str, port: int) -> bool:
    """The Pub/Sub emulator answers `GET /` with 200 "Ok" on its gRPC/REST port."""
    return http_get_status(f"http://{url_host(host)}:{port}/") == 200


def probe_kafka(host: str, port: int) -> bool:
    """A Kafka broker answers an ApiVersions (v0) request with the same correlation id."""
    correlation_id = 0x5F10
    client_id = b"shopflow-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS) as sock:
            sock.settimeout(PROBE_TIMEOUT_SECONDS)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    size, got_id = struct.unpack(">ii", header)
    return bool(size > 4 and got_id == correlation_id)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def url_host(host: str) -> str:
    """`host` as it goes into a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports nothing listens on at 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
