"""Client-sent identity headers never reach the task service: the gateway strips
every spelling of them and sets X-User-Id from the verified token."""

from __future__ import annotations

from stack import bearer, jwt_via_bearer

SPELLINGS = ["X-User-Id", "x-user-id", "X_User_Id", "x_user_id", "X.User.Id"]


def forged_headers(victim_id: str, token: str) -> list[tuple[str, str]]:
    headers = [(name, victim_id) for name in SPELLINGS]
    headers += [("X-User-Id", victim_id), ("X-User-Id", "admin")]  # duplicates too
    headers += [("X-User-Email", "victim@example.com"), ("x_user_email", "victim@example.com")]
    headers.append(("Authorization", f"Bearer {token}"))
    return headers


def identity_seen(entry: dict) -> list[tuple[str, str]]:
    return sorted((name.lower(), value) for name, value in entry["identity_headers"])


def test_forged_identity_headers_are_replaced(main_stack, main_users):
    alice, bob = main_users
    alice_jwt = jwt_via_bearer(main_stack.web, alice)
    bob_jwt = jwt_via_bearer(main_stack.web, bob)

    with main_stack.gateway.client() as gw:
        alice_task = gw.post("/api/tasks", json={"title": "alice only"}, headers=bearer(alice_jwt))
        assert alice_task.status_code == 201
        alice_task_id = alice_task.json()["id"]

        before = main_stack.tasks.request_count()
        forged = forged_headers(alice.user_id, bob_jwt)

        created = gw.post("/api/tasks", json={"title": "made by bob"}, headers=forged)
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == bob.user_id

        listed = gw.get("/api/tasks", headers=forged)
        assert listed.status_code == 200
        assert {t["user_id"] for t in listed.json()} == {bob.user_id}
        assert "alice only" not in [t["title"] for t in listed.json()]

        stolen = gw.get(f"/api/tasks/{alice_task_id}", headers=forged)
        assert stolen.status_code == 404

    stats = main_stack.tasks.stats()
    reached = [e for e in stats["recent"] if e["seq"] > before]
    assert len(reached) == 3
    for entry in reached:
        # Exactly the gateway's headers, with Bob's verified identity; no forged spelling survived.
        assert identity_seen(entry) == [("x-user-email", bob.email), ("x-user-id", bob.user_id)], entry


def test_forged_identity_without_token_is_refused(main_stack, main_users):
    alice, _ = main_users
    before = main_stack.tasks.request_count()
    headers = [(name, alice.user_id) for name in SPELLINGS]
    for method, path in (("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/api/tasks/1")):
        with main_stack.gateway.client() as gw:  # fresh connection per request
            response = gw.request(method, path, headers=headers, json={"title": "x"} if method == "POST" else None)
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
    assert main_stack.tasks.request_count() == before
