"""Two users, real tokens from Better Auth, tasks through the gateway: each user
sees only their own tasks, whichever algorithm the jwt plugin signs with."""

from __future__ import annotations

from stack import bearer, jwt_claims, jwt_header, jwt_via_bearer, jwt_via_cookie, sign_up


def test_two_users_are_isolated(alg_stack):
    stack = alg_stack
    alice = sign_up(stack.web, label="alice")
    bob = sign_up(stack.web, label="bob")
    alice_jwt = jwt_via_cookie(stack.web, alice)  # session cookie
    bob_jwt = jwt_via_bearer(stack.web, bob)  # bearer plugin

    # The tokens are what the gateway expects: right algorithm, key from the JWKS,
    # sub = user id, iss = aud = the app's base URL.
    for token, user in ((alice_jwt, alice), (bob_jwt, bob)):
        header, claims = jwt_header(token), jwt_claims(token)
        assert header["alg"] == stack.web.alg
        assert header["kid"] in {k["kid"] for k in stack.web.jwks()["keys"]}
        assert claims["sub"] == user.user_id
        assert claims["iss"] == stack.web.url
        assert claims["aud"] == stack.web.url
        assert claims["email"] == user.email

    before = stack.tasks.request_count()
    with stack.gateway.client() as gw:
        created = {}
        for user, token, titles in ((alice, alice_jwt, ["alice 1", "alice 2"]), (bob, bob_jwt, ["bob 1"])):
            for title in titles:
                response = gw.post("/api/tasks", json={"title": title, "description": "e2e"}, headers=bearer(token))
                assert response.status_code == 201, response.text
                task = response.json()
                assert task["user_id"] == user.user_id  # X-User-Id was the token's sub
                created[title] = task

        alice_list = gw.get("/api/tasks", headers=bearer(alice_jwt))
        assert alice_list.status_code == 200
        assert [t["title"] for t in alice_list.json()] == ["alice 1", "alice 2"]
        bob_list = gw.get("/api/tasks", headers=bearer(bob_jwt))
        assert bob_list.status_code == 200
        assert [t["title"] for t in bob_list.json()] == ["bob 1"]

        # Every route of the task service works through the gateway for the owner.
        a1 = created["alice 1"]["id"]
        assert gw.get(f"/api/tasks/{a1}", headers=bearer(alice_jwt)).json()["title"] == "alice 1"
        toggled = gw.patch(f"/api/tasks/{a1}/complete", headers=bearer(alice_jwt))
        assert toggled.status_code == 200 and toggled.json()["completed"] is True
        done = gw.get("/api/tasks", params={"completed": "true"}, headers=bearer(alice_jwt))
        assert [t["id"] for t in done.json()] == [a1]
        patched = gw.patch(f"/api/tasks/{a1}", json={"description": "patched"}, headers=bearer(alice_jwt))
        assert patched.status_code == 200 and patched.json()["description"] == "patched"
        replaced = gw.put(
            f"/api/tasks/{a1}",
            json={"title": "alice 1 (new)", "description": "", "completed": False},
            headers=bearer(alice_jwt),
        )
        assert replaced.status_code == 200 and replaced.json()["title"] == "alice 1 (new)"
        invalid = gw.post("/api/tasks", json={"title": ""}, headers=bearer(alice_jwt))
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["loc"] == ["body", "title"]

        # Bob cannot see or touch Alice's task: 404, never 403.
        alice_task = gw.get(f"/api/tasks/{a1}", headers=bearer(alice_jwt)).json()
        for method, suffix, body in (
            ("GET", "", None),
            ("PUT", "", {"title": "mine now", "description": "", "completed": True}),
            ("PATCH", "", {"title": "mine now"}),
            ("PATCH", "/complete", None),
            ("DELETE", "", None),
        ):
            response = gw.request(method, f"/api/tasks/{a1}{suffix}", json=body, headers=bearer(bob_jwt))
            assert response.status_code == 404, f"{method} {suffix}: {response.status_code}"
        assert gw.get(f"/api/tasks/{a1}", headers=bearer(alice_jwt)).json() == alice_task

        a2 = created["alice 2"]["id"]
        assert gw.delete(f"/api/tasks/{a2}", headers=bearer(alice_jwt)).status_code == 204
        assert gw.get(f"/api/tasks/{a2}", headers=bearer(alice_jwt)).status_code == 404

    # The service itself saw exactly one identity per request, always the caller's sub.
    stats = stack.tasks.stats()
    reached = [e for e in stats["recent"] if e["seq"] > before]
    assert len(reached) == stats["api_requests"] - before
    known = {alice.user_id, bob.user_id}
    for entry in reached:
        ids = [v for n, v in entry["identity_headers"] if n.lower() == "x-user-id"]
        assert len(ids) == 1 and ids[0] in known, entry
