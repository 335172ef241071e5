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


class RequestLogMiddleware:
    """Records every /api request before the identity check can refuse it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            record(request.method, request.path, request.META.get("HTTP_X_USER_ID"))
        return self.get_response(request)
