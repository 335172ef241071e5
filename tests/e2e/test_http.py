"""HTTP-level behaviour of the gateway in front of the task service, spoken over
raw sockets so nothing on the client side normalises or retries."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from stack import jwt_via_bearer


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a response arrived")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def request_bytes(method: str, path: str, *, token: str | None = None, body: bytes | None = None,
                  send_body: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + (body if body is not None and send_body else b"")


def test_connection_stays_usable_after_refusing_a_request_whose_body_was_not_sent_yet(main_stack, main_users):
    """A client sends a POST's headers, the gateway refuses it (bad token) before the
    body arrives, the client then sends the body and its next request on the same
    keep-alive connection. The gateway must either announce `Connection: close` on
    the 401 or answer the next request; silently dropping the connection makes
    ordinary keep-alive clients fail with 'server disconnected'."""
    _, bob = main_users
    token = jwt_via_bearer(main_stack.web, bob)
    body = json.dumps({"title": "sent late"}).encode()
    sock = connect(main_stack.gateway.url)
    try:
        sock.sendall(request_bytes("POST", "/api/tasks", token="not-a-valid-token", body=body, send_body=False))
        status, headers, _ = read_response(sock)
        assert status == 401
        if "close" in headers.get("connection", "").lower():
            return  # announced: a well-behaved client opens a new connection
        try:
            sock.sendall(body)
            sock.sendall(request_bytes("GET", "/api/tasks", token=token))
            status, _, _ = read_response(sock)
        except (ConnectionError, OSError) as err:
            pytest.fail(
                "the gateway closed a keep-alive connection after a 401 without sending "
                f"'Connection: close' ({type(err).__name__}: {err})"
            )
        assert status == 200
    finally:
        sock.close()


@pytest.mark.parametrize(
    "path",
    [
        "/__stats",
        "/healthz",
        "/api/tasks/../../__stats",
        "/api/tasks/%2e%2e/%2e%2e/__stats",
        "/api/tasks/..%2f..%2f__stats",
        "/api/tasks/%2E%2E%2F%2E%2E%2F__stats",
        "/api/tasks/..;/..;/__stats",
        "/api/tasks%2f..%2f..%2f__stats",
        "/api/tasksX",
    ],
)
def test_only_the_tasks_api_is_reachable_through_the_gateway(main_stack, main_users, path):
    """The service's loopback-only endpoints must not be reachable through the gateway
    (it connects from loopback), however the path is spelled."""
    _, bob = main_users
    token = jwt_via_bearer(main_stack.web, bob)
    sock = connect(main_stack.gateway.url)
    try:
        sock.sendall(request_bytes("GET", path, token=token))
        status, _, body = read_response(sock)
    finally:
        sock.close()
    assert status in (400, 404), f"{path}: {status}"
    assert b"api_requests" not in body and b'"status":"ok"' not in body.replace(b" ", b"")
