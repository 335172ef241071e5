from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from taskservice import create_app
from fastapi.testclient import TestClient

from .conftest import ALICE, BOB, as_user


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- identity -------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks/1"),
        ("PUT", "/api/tasks/1"),
        ("PATCH", "/api/tasks/1"),
        ("PATCH", "/api/tasks/1/complete"),
        ("DELETE", "/api/tasks/1"),
        ("GET", "/api/admin/stats"),
    ],
)
def test_missing_user_header_is_401_on_every_route(client, method, path):
    response = client.request(method, path, json={"title": "x", "description": "", "completed": False})
    assert response.status_code == 401
    assert "X-User-Id" in response.json()["detail"]


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_user_header_is_401(client, value):
    response = client.get("/api/tasks", headers={"X-User-Id": value})
    assert response.status_code == 401


def test_duplicate_user_header_is_401(client):
    response = client.get("/api/tasks", headers=[("X-User-Id", ALICE), ("X-User-Id", BOB)])
    assert response.status_code == 401


@pytest.mark.parametrize("name", ["x_user_id", "X_User_Id", "X.User.Id", "X-User"])
def test_other_spellings_are_not_an_identity(client, name):
    response = client.get("/api/tasks", headers={name: ALICE})
    assert response.status_code == 401


def test_header_name_is_case_insensitive(client, make_task):
    make_task(ALICE, title="mine")
    response = client.get("/api/tasks", headers={"x-user-id": ALICE})
    assert response.status_code == 200
    assert [t["title"] for t in response.json()] == ["mine"]


# --- create / read ----------------------------------------------------------


def test_create_returns_201_with_all_fields(client):
    response = client.post(
        "/api/tasks", json={"title": "  Buy milk  ", "description": "2 litres"}, headers=as_user(ALICE)
    )
    assert response.status_code == 201
    task = response.json()
    assert set(task) == {"id", "user_id", "title", "description", "completed", "created_at", "updated_at"}
    assert task["title"] == "Buy milk"
    assert task["description"] == "2 litres"
    assert task["completed"] is False
    assert task["user_id"] == ALICE
    assert parse_time(task["created_at"]) == parse_time(task["updated_at"])
    assert response.headers["location"] == f"/api/tasks/{task['id']}"


def test_get_own_task(client, make_task):
    task = make_task(ALICE, title="read me")
    response = client.get(f"/api/tasks/{task['id']}", headers=as_user(ALICE))
    assert response.status_code == 200
    assert response.json() == task


def test_list_only_own_tasks_in_id_order(client, make_task):
    a1 = make_task(ALICE, title="a1")
    make_task(BOB, title="b1")
    a2 = make_task(ALICE, title="a2")
    response = client.get("/api/tasks", headers=as_user(ALICE))
    assert response.status_code == 200
    assert [t["id"] for t in response.json()] == [a1["id"], a2["id"]]
    response = client.get("/api/tasks", headers=as_user(BOB))
    assert [t["title"] for t in response.json()] == ["b1"]


def test_list_empty_for_new_user(client, make_task):
    make_task(ALICE)
    response = client.get("/api/tasks", headers=as_user("someone-else"))
    assert response.status_code == 200
    assert response.json() == []


def test_list_filter_completed(client, make_task):
    open_task = make_task(ALICE, title="open")
    done_task = make_task(ALICE, title="done", completed=True)
    make_task(BOB, title="bob done", completed=True)
    done = client.get("/api/tasks", params={"completed": "true"}, headers=as_user(ALICE)).json()
    assert [t["id"] for t in done] == [done_task["id"]]
    still_open = client.get("/api/tasks", params={"completed": "false"}, headers=as_user(ALICE)).json()
    assert [t["id"] for t in still_open] == [open_task["id"]]


def test_list_filter_rejects_garbage(client):
    response = client.get("/api/tasks", params={"completed": "maybe"}, headers=as_user(ALICE))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "completed"]


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"title": "ok", "description": "d" * 2001}, "description"),
        ({"title": "ok", "completed": "perhaps"}, "completed"),
        ({"title": "ok", "owner": "mallory"}, "owner"),
        ({"title": "ok", "user_id": BOB}, "user_id"),
    ],
)
def test_create_validation_errors_name_the_field(client, body, field):
    response = client.post("/api/tasks", json=body, headers=as_user(ALICE))
    assert response.status_code == 422, response.text
    locations = [tuple(d["loc"]) for d in response.json()["detail"]]
    assert ("body", field) in locations


def test_create_rejects_non_json(client):
    response = client.post(
        "/api/tasks", content=b"title=x", headers={**as_user(ALICE), "content-type": "text/plain"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("task_id", ["abc", "0", "-1", "99999999999999999999999"])
def test_bad_task_id_is_422(client, task_id):
    response = client.get(f"/api/tasks/{task_id}", headers=as_user(ALICE))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


def test_body_cannot_assign_owner(client, make_task):
    response = client.post("/api/tasks", json={"title": "x", "user_id": BOB}, headers=as_user(ALICE))
    assert response.status_code == 422
    assert client.get("/api/tasks", headers=as_user(BOB)).json() == []


# --- update -----------------------------------------------------------------


def test_put_replaces_everything(client, make_task):
    task = make_task(ALICE, title="old", description="old desc")
    response = client.put(
        f"/api/tasks/{task['id']}",
        json={"title": "new", "description": "", "completed": True},
        headers=as_user(ALICE),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["title"], body["description"], body["completed"]) == ("new", "", True)
    assert body["created_at"] == task["created_at"]
    assert parse_time(body["updated_at"]) >= parse_time(task["updated_at"])


def test_put_requires_every_field(client, make_task):
    task = make_task(ALICE)
    response = client.put(f"/api/tasks/{task['id']}", json={"title": "only"}, headers=as_user(ALICE))
    assert response.status_code == 422
    missing = {d["loc"][-1] for d in response.json()["detail"]}
    assert missing == {"description", "completed"}


def test_patch_changes_only_given_fields(client, make_task):
    task = make_task(ALICE, title="keep", description="before")
    response = client.patch(
        f"/api/tasks/{task['id']}", json={"description": "after"}, headers=as_user(ALICE)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "keep"
    assert body["description"] == "after"
    assert body["completed"] is False


def test_patch_empty_body_is_a_no_op(client, make_task):
    task = make_task(ALICE)
    response = client.patch(f"/api/tasks/{task['id']}", json={}, headers=as_user(ALICE))
    assert response.status_code == 200
    assert response.json() == task


@pytest.mark.parametrize("field", ["title", "completed"])
def test_patch_null_for_required_field_is_422(client, make_task, field):
    task = make_task(ALICE)
    response = client.patch(f"/api/tasks/{task['id']}", json={field: None}, headers=as_user(ALICE))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_toggle_complete(client, make_task):
    task = make_task(ALICE)
    first = client.patch(f"/api/tasks/{task['id']}/complete", headers=as_user(ALICE))
    assert first.status_code == 200 and first.json()["completed"] is True
    second = client.patch(f"/api/tasks/{task['id']}/complete", headers=as_user(ALICE))
    assert second.status_code == 200 and second.json()["completed"] is False


def test_delete(client, make_task):
    task = make_task(ALICE)
    response = client.delete(f"/api/tasks/{task['id']}", headers=as_user(ALICE))
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/tasks/{task['id']}", headers=as_user(ALICE)).status_code == 404
    assert client.delete(f"/api/tasks/{task['id']}", headers=as_user(ALICE)).status_code == 404


# --- isolation --------------------------------------------------------------


@pytest.mark.parametrize(
    "method,suffix,body",
    [
        ("GET", "", None),
        ("PUT", "", {"title": "stolen", "description": "", "completed": True}),
        ("PATCH", "", {"title": "stolen"}),
        ("PATCH", "/complete", None),
        ("DELETE", "", None),
    ],
)
def test_other_users_task_is_404_and_untouched(client, make_task, method, suffix, body):
    task = make_task(ALICE, title="alice's")
    response = client.request(method, f"/api/tasks/{task['id']}{suffix}", json=body, headers=as_user(BOB))
    assert response.status_code == 404
    assert response.json() == {"detail": "task not found"}
    # Same answer as for an id that does not exist at all.
    missing = client.request(method, f"/api/tasks/{task['id'] + 1000}{suffix}", json=body, headers=as_user(BOB))
    assert missing.status_code == 404 and missing.json() == response.json()
    assert client.get(f"/api/tasks/{task['id']}", headers=as_user(ALICE)).json() == task


# --- admin statistics -----------------------------------------------------


def test_admin_stats_start_at_zero(client):
    response = client.get("/api/admin/stats", headers=as_user(ALICE))
    assert response.status_code == 200
    assert response.json() == {"users": 0, "tasks": 0, "completed": 0}


def test_admin_stats_count_users_and_tasks_of_everyone(client, make_task):
    make_task(ALICE, title="alice secret plan", description="do not share")
    done = make_task(ALICE, title="alice 2")
    client.patch(f"/api/tasks/{done['id']}/complete", headers=as_user(ALICE))
    make_task(BOB, title="bob 1")
    response = client.get("/api/admin/stats", headers=as_user(BOB))
    assert response.status_code == 200
    assert response.json() == {"users": 2, "tasks": 3, "completed": 1}
    # Counts only: nothing of a task's contents or owner leaves through this route.
    for secret in ("alice secret plan", "do not share", ALICE, BOB):
        assert secret not in response.text


def test_admin_stats_are_counted_as_api_requests(loopback_client):
    before = loopback_client.get("/__stats").json()["api_requests"]
    loopback_client.get("/api/admin/stats", headers=as_user(ALICE))
    stats = loopback_client.get("/__stats").json()
    assert stats["api_requests"] == before + 1
    assert stats["recent"][-1]["path"] == "/api/admin/stats"


# --- persistence, health, stats -------------------------------------------


def test_data_survives_restart(database_url, tmp_path):
    with TestClient(create_app(database_url)) as first:
        created = first.post("/api/tasks", json={"title": "persist"}, headers=as_user(ALICE)).json()
    with TestClient(create_app(database_url)) as second:
        listed = second.get("/api/tasks", headers=as_user(ALICE)).json()
    assert listed == [created]
    rows = sqlite3.connect(tmp_path / "tasks.db").execute("SELECT user_id, title FROM tasks").fetchall()
    assert rows == [(ALICE, "persist")]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_stats_count_api_requests_and_identity_headers(loopback_client):
    before = loopback_client.get("/__stats").json()["api_requests"]
    loopback_client.get("/api/tasks")  # 401, still counted: it reached the service
    loopback_client.get("/api/tasks", headers=[("X-User-Id", ALICE), ("x_user_id", BOB)])
    loopback_client.get("/healthz")  # not an API request
    stats = loopback_client.get("/__stats").json()
    assert stats["api_requests"] == before + 2
    unauthenticated, last = stats["recent"][-2:]
    assert unauthenticated["status"] == 401 and unauthenticated["identity_headers"] == []
    assert last["method"] == "GET" and last["path"] == "/api/tasks" and last["status"] == 200
    assert sorted(name.lower() for name, _ in last["identity_headers"]) == ["x-user-id", "x_user_id"]


def test_stats_hidden_from_non_loopback_clients(client):
    assert client.get("/__stats").status_code == 404


def test_stats_can_be_disabled(database_url):
    with TestClient(create_app(database_url, stats_enabled=False), client=("127.0.0.1", 1)) as c:
        assert c.get("/__stats").status_code == 404
