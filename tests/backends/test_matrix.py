"""Each backend in deploy/backends behind Portcullis, with tokens from a real Better
Auth app: the task API works, users are isolated, forged identity headers never reach
the backend, and a request without a token never reaches it at all."""

from __future__ import annotations

from backends import Guarded
from stack import bearer, http_client

# Every spelling a backend framework might read as X-User-Id (CGI-style servers map `_`
# and `-` alike), plus a repeated header.
SPELLINGS = ["X-User-Id", "x-user-id", "X_User_Id", "x_user_id", "X.User.Id", "X-USER-ID"]


def forged(victim_id: str) -> list[tuple[str, str]]:
    return [(name, victim_id) for name in SPELLINGS] + [("X-User-Id", "admin")]


def test_tasks_crud_through_the_gateway(guarded: Guarded, callers):
    alice, _ = callers
    with guarded.gateway.client() as gw:
        created = gw.post("/api/tasks", json={"title": "buy milk"}, headers=bearer(alice.jwt))
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["user_id"] == alice.user.user_id
        assert task["title"] == "buy milk" and task["completed"] is False

        listed = gw.get("/api/tasks", headers=bearer(alice.jwt))
        assert listed.status_code == 200
        assert task["id"] in [t["id"] for t in listed.json()]

        done = gw.patch(f"/api/tasks/{task['id']}", json={"completed": True}, headers=bearer(alice.jwt))
        assert done.status_code == 200 and done.json()["completed"] is True
        assert gw.get(f"/api/tasks/{task['id']}", headers=bearer(alice.jwt)).json()["completed"] is True

        assert gw.delete(f"/api/tasks/{task['id']}", headers=bearer(alice.jwt)).status_code == 204
        assert gw.get(f"/api/tasks/{task['id']}", headers=bearer(alice.jwt)).status_code == 404


def test_another_users_task_is_404(guarded: Guarded, callers):
    alice, bob = callers
    with guarded.gateway.client() as gw:
        task = gw.post("/api/tasks", json={"title": "alice's secret"}, headers=bearer(alice.jwt)).json()
        path = f"/api/tasks/{task['id']}"

        assert gw.get(path, headers=bearer(bob.jwt)).status_code == 404
        assert gw.patch(path, json={"title": "stolen"}, headers=bearer(bob.jwt)).status_code == 404
        assert gw.delete(path, headers=bearer(bob.jwt)).status_code == 404
        bobs = gw.get("/api/tasks", headers=bearer(bob.jwt)).json()
        assert all(t["user_id"] == bob.user.user_id for t in bobs)
        assert task["id"] not in [t["id"] for t in bobs]

        # Alice's task is untouched.
        mine = gw.get(path, headers=bearer(alice.jwt))
        assert mine.status_code == 200 and mine.json()["title"] == "alice's secret"


def test_forged_identity_headers_are_ignored(guarded: Guarded, callers):
    alice, bob = callers
    with guarded.gateway.client() as gw:
        alices = gw.post("/api/tasks", json={"title": "alice only"}, headers=bearer(alice.jwt)).json()
        before = guarded.backend.stats()["api_requests"]
        headers = forged(alice.user.user_id) + list(bearer(bob.jwt).items())

        created = gw.post("/api/tasks", json={"title": "made by bob"}, headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == bob.user.user_id

        listed = gw.get("/api/tasks", headers=headers)
        assert listed.status_code == 200
        assert {t["user_id"] for t in listed.json()} == {bob.user.user_id}

        assert gw.get(f"/api/tasks/{alices['id']}", headers=headers).status_code == 404

    # The backend saw exactly one X-User-Id on each request: Bob's, from the token.
    reached = guarded.backend.requests_since(before)
    assert [r["user_id_header"] for r in reached] == [bob.user.user_id] * 3, reached


def test_no_token_is_refused_before_the_backend(guarded: Guarded, callers):
    alice, _ = callers
    before = guarded.backend.stats()["api_requests"]
    for method, path in (("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/api/tasks/1"), ("DELETE", "/api/tasks/1")):
        with guarded.gateway.client() as gw:  # a fresh connection per request
            body = {"title": "x"} if method == "POST" else None
            response = gw.request(method, path, headers=forged(alice.user.user_id), json=body)
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert guarded.backend.stats()["api_requests"] == before


def test_backend_alone_refuses_a_request_without_x_user_id(guarded: Guarded):
    with http_client(base_url=guarded.backend.url) as direct:
        assert direct.get("/api/tasks").status_code == 401
        assert direct.post("/api/tasks", json={"title": "x"}).status_code == 401
        assert direct.get("/api/tasks", headers={"X-User-Id": ""}).status_code == 401
        ambiguous = direct.get("/api/tasks", headers=[("X-User-Id", "a"), ("X-User-Id", "b")])
        assert ambiguous.status_code == 401


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                    continue
                if len(address) == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    words = [bytes.fromhex(address[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
                    found.add("::1" if "".join(words) == "0" * 31 + "1" else "".join(words))
    return found


def test_backend_listens_on_loopback_only(guarded: Guarded):
    port = int(guarded.backend.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"127.0.0.1"}
