"""The task API. Every query is filtered by request.user_id, so another user's task
answers 404 exactly like a task that does not exist."""

import json

from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from . import stats as request_stats
from .models import Task


def _body(request):
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _invalid(message):
    return JsonResponse({"error": message}, status=400)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
def stats(request):
    return JsonResponse(request_stats.snapshot())


@csrf_exempt
@require_http_methods(["GET", "POST"])
def task_list(request):
    if request.method == "GET":
        tasks = Task.objects.filter(user_id=request.user_id).order_by("id")
        return JsonResponse([t.as_json() for t in tasks], safe=False)
    body = _body(request)
    if body is None or not isinstance(body.get("title"), str) or not body["title"].strip():
        return _invalid("title is required")
    task = Task.objects.create(
        user_id=request.user_id, title=body["title"], completed=bool(body.get("completed", False))
    )
    response = JsonResponse(task.as_json(), status=201)
    response["Location"] = f"/api/tasks/{task.id}"
    return response


@csrf_exempt
@require_http_methods(["GET", "PATCH", "DELETE"])
def task_detail(request, task_id):
    task = get_object_or_404(Task, id=task_id, user_id=request.user_id)
    if request.method == "DELETE":
        task.delete()
        return HttpResponse(status=204)
    if request.method == "PATCH":
        body = _body(request)
        if body is None:
            return _invalid("the body must be a JSON object")
        if "title" in body:
            if not isinstance(body["title"], str) or not body["title"].strip():
                return _invalid("title must be a non-empty string")
            task.title = body["title"]
        if "completed" in body:
            if not isinstance(body["completed"], bool):
                return _invalid("completed must be true or false")
            task.completed = body["completed"]
        task.save()
    return JsonResponse(task.as_json())


def not_found(request, exception):
    return JsonResponse({"error": "not found"}, status=404)
