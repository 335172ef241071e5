"""The identity boundary: Portcullis verified the caller's JWT and set X-User-Id."""

from django.http import JsonResponse


class GatewayUserMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        user_id = request.META.get("HTTP_X_USER_ID", "").strip()
        # Exactly one value: a server joins repeated headers with commas.
        if not user_id or "," in user_id:
            return JsonResponse({"error": "missing or ambiguous X-User-Id"}, status=401)
        request.user_id = user_id
        return self.get_response(request)
