"""What reached this process under /api, for the end-to-end tests (per worker process)."""

import threading

_lock = threading.Lock()
_requests = []


def record(method, path, user_id_header):
    with _lock:
        _requests.append({"method": method, "path": path, "user_id_header": user_id_header})


def snapshot():
    with _lock:
        return {"api_requests": len(_requests), "recent": _requests[-50:]}
