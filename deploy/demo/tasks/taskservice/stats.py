from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


def identity_header_name(raw_name: str) -> bool:
    """True for any spelling of an X-User-* header (dashes, underscores, dots, any case)."""
    normalised = raw_name.lower().replace("_", "-").replace(".", "-")
    return normalised.startswith("x-user-")


class RequestLog:
    """Counts every request that reached the /api routes and keeps the most recent ones.

    It is the service's own record of what arrived, so callers can prove that a
    request the gateway refused never got here.
    """

    def __init__(self, keep: int = 500) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def record(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        identity = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, value in headers
            if identity_header_name(name.decode("latin-1"))
        ]
        with self._lock:
            self._total += 1
            entry: dict[str, Any] = {
                "seq": self._total,
                "time": time.time(),
                "method": method,
                "path": path,
                "query": query,
                "identity_headers": identity,
                "status": None,
            }
            self._recent.append(entry)
        return entry

    def finish(self, entry: dict[str, Any], status: int) -> None:
        with self._lock:
            entry["status"] = status

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"api_requests": self._total, "recent": [dict(e) for e in self._recent]}
