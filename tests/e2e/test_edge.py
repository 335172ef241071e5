"""Edge mode with the real Better Auth: the gateway is the only origin, the web app
signs its session cookie cache with its JWT keys (jwt({ sessionCookieCache: true }),
cookieCache strategy "jwt"), and a client that behaves like a same-origin page manages
its tasks with that cookie alone, never an Authorization header."""

from __future__ import annotations

import time

import pytest

from stack import Stack, http_client, jwt_claims, jwt_header, start_stack, wait_until

# Short, so the expiry test sees the cookie cache run out (Better Auth's default: 300).
COOKIE_MAX_AGE = 15
SESSION_DATA = "better-auth.session_data"
SESSION_TOKEN = "better-auth.session_token"


@pytest.fixture(scope="module")
def edge(workdir):
    stack = start_stack(workdir / "edge", name="edge", edge_cookie_max_age=COOKIE_MAX_AGE)
    yield stack
    stack.stop()


class Page:
    """What a page on the gateway's origin does with fetch(): the browser's cookie jar,
    `Sec-Fetch-Site: same-origin` and its own `Origin` on writes, and no token code.
    On a 401 that says the session cookie is missing or expired it asks Better Auth's
    get-session to renew the cookie and retries once."""

    def __init__(self, stack: Stack):
        self.origin = stack.gateway.url
        self.sent: list[dict[str, str]] = []
        self.client = http_client(base_url=self.origin, event_hooks={"request": [self._record]})

    def _record(self, request) -> None:
        self.sent.append({k.lower(): v for k, v in request.headers.items()})

    def fetch(self, method: str, path: str, *, renew: bool = True, **kwargs):
        headers = {"Sec-Fetch-Site": "same-origin"}
        if method not in ("GET", "HEAD"):
            headers["Origin"] = self.origin
        response = self.client.request(method, path, headers=headers, **kwargs)
        if renew and response.status_code == 401 and response.json().get("error") in (
            "session_missing",
            "session_expired",
        ):
            self.client.get("/api/auth/get-session", headers={"Sec-Fetch-Site": "same-origin"})
            response = self.client.request(method, path, headers=headers, **kwargs)
        return response

    def sign_up(self, label: str) -> dict:
        email = f"{label}-{time.monotonic_ns()}@example.com"
        response = self.fetch(
            "POST", "/api/auth/sign-up/email", json={"name": label, "email": email, "password": "pw-" + email}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def cookie(self, name: str) -> str | None:
        self.client.cookies.jar.clear_expired_cookies()
        return next((c.value for c in self.client.cookies.jar if c.name == name), None)

    def assert_no_token_sent(self) -> None:
        assert self.sent, "no request was made"
        assert all("authorization" not in h for h in self.sent), "the page sent an Authorization header"

    def close(self) -> None:
        self.client.close()


# Two users for the whole module: Better Auth allows 3 sign-ups per 10 s per client.
@pytest.fixture(scope="module")
def alice(edge):
    p = Page(edge)
    p.user = p.sign_up("alice")
    yield p
    p.close()


@pytest.fixture(scope="module")
def bob(edge):
    p = Page(edge)
    p.user = p.sign_up("bob")
    yield p
    p.close()


def titles(page: Page) -> list[str]:
    response = page.fetch("GET", "/api/tasks")
    assert response.status_code == 200, response.text
    return [t["title"] for t in response.json()]


def test_a_page_manages_its_tasks_with_the_session_cookie_alone(edge, alice):
    page, user = alice, alice.user
    session_data = page.cookie(SESSION_DATA)
    assert session_data, "Better Auth set no session_data cookie"
    # It is Better Auth's session-cache JWT, signed with the keys the gateway fetches.
    assert jwt_header(session_data)["typ"] == "better-auth.session-cache+jwt"
    claims = jwt_claims(session_data)
    assert claims["aud"] == "better-auth:session-cache"
    assert claims["iss"] == edge.gateway.url
    assert claims["sub"] == user["user"]["id"]
    assert jwt_header(session_data)["kid"] in {k["kid"] for k in edge.web.jwks()["keys"]}

    created = page.fetch("POST", "/api/tasks", json={"title": "from the cookie", "description": "edge"})
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == user["user"]["id"]  # X-User-Id was the cookie's sub
    task_id = created.json()["id"]
    toggled = page.fetch("PATCH", f"/api/tasks/{task_id}/complete")
    assert toggled.status_code == 200 and toggled.json()["completed"] is True
    assert titles(page) == ["from the cookie"]
    assert page.fetch("DELETE", f"/api/tasks/{task_id}").status_code == 204
    assert titles(page) == []
    page.assert_no_token_sent()

    # The session token is a credential for days: never in the gateway's logs.
    log = edge.gateway.proc.log_path.read_text(errors="replace")
    assert user["token"] not in log
    assert claims["sid"] not in log


def test_two_users_see_only_their_own_tasks(alice, bob):
    alice_id, bob_id = alice.user["user"]["id"], bob.user["user"]["id"]
    for p, title in ((alice, "alice's"), (bob, "bob's")):
        assert p.fetch("POST", "/api/tasks", json={"title": title}).status_code == 201
    alice_tasks = alice.fetch("GET", "/api/tasks").json()
    bob_tasks = bob.fetch("GET", "/api/tasks").json()
    assert [(t["title"], t["user_id"]) for t in alice_tasks] == [("alice's", alice_id)]
    assert [(t["title"], t["user_id"]) for t in bob_tasks] == [("bob's", bob_id)]
    # Bob cannot reach Alice's task by its id.
    assert bob.fetch("GET", f"/api/tasks/{alice_tasks[0]['id']}").status_code == 404
    alice.assert_no_token_sent()
    bob.assert_no_token_sent()


def test_a_cross_site_post_with_the_victims_cookie_is_refused(edge, bob):
    page = bob
    mine = titles(page)
    before = edge.tasks.request_count()
    # What a form on another site makes the browser send: the cookie rides along.
    forged = page.client.post(
        "/api/tasks",
        json={"title": "forged"},
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    )
    assert forged.status_code == 403
    assert forged.json()["error"] == "cross_site_request"
    # Without Sec-Fetch-Site (an older browser), the Origin alone decides.
    forged = page.client.post("/api/tasks", json={"title": "forged"}, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert edge.tasks.request_count() == before, "a forged request reached the task service"
    assert titles(page) == mine


def test_the_cookie_cache_expiring_is_invisible_to_a_page_that_renews_it(alice):
    page = alice
    assert page.fetch("POST", "/api/tasks", json={"title": "before"}).status_code == 201
    first = page.cookie(SESSION_DATA)
    # The browser drops the cookie at its Max-Age; the session itself lives on.
    wait_until("the session cookie cache to expire", lambda: page.cookie(SESSION_DATA) is None,
               timeout=COOKIE_MAX_AGE + 10, interval=0.5)
    assert page.cookie(SESSION_TOKEN)
    bare = page.fetch("GET", "/api/tasks", renew=False)
    assert bare.status_code == 401 and bare.json()["error"] == "session_missing"
    # The page renews it through get-session and goes on without an error.
    assert page.fetch("POST", "/api/tasks", json={"title": "after"}).status_code == 201
    assert titles(page)[-2:] == ["before", "after"]
    renewed = page.cookie(SESSION_DATA)
    assert renewed and renewed != first
    page.assert_no_token_sent()


def test_signing_out_ends_access_for_cookie_requests_at_once(bob):
    page = bob
    assert page.fetch("GET", "/api/tasks").status_code == 200
    out = page.fetch("POST", "/api/auth/sign-out", json={})
    assert out.status_code == 200, out.text
    assert page.cookie(SESSION_DATA) is None and page.cookie(SESSION_TOKEN) is None
    # Renewing finds no session: the retry is refused too.
    after = page.fetch("GET", "/api/tasks")
    assert after.status_code == 401
    assert after.json()["error"] == "session_missing"


def test_a_copied_cookie_of_a_signed_out_session_is_refused_at_once(edge, alice):
    """Signing out revokes the session at the gateway (the web app's hook sends its id),
    so a copy of its still-valid session cookie, taken before, stops working at once
    instead of living out the cookie cache's max age."""
    page = alice
    assert isinstance(titles(page), list)  # renews the cookie if it has expired
    copied = page.cookie(SESSION_DATA)
    assert copied
    thief = http_client(base_url=edge.gateway.url)
    headers = {"Cookie": f"{SESSION_DATA}={copied}", "Sec-Fetch-Site": "same-origin"}
    try:
        assert thief.get("/api/tasks", headers=headers).status_code == 200
        assert page.fetch("POST", "/api/auth/sign-out", json={}).status_code == 200
        last = {}

        def refused() -> bool:
            last["r"] = thief.get("/api/tasks", headers=headers)
            return last["r"].status_code == 401

        wait_until("the copied cookie to be refused", refused, timeout=1.0, interval=0.05)
        assert "revoked" in last["r"].headers.get("www-authenticate", "")
        # Not because it expired: the cookie itself is still within its lifetime.
        assert jwt_claims(copied)["exp"] > time.time()
    finally:
        thief.close()
