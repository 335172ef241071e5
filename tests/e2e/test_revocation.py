"""Ending sessions in Better Auth reaches the gateway: the web app's hooks send POST
/revoke to the gateway's admin listener, so JWTs that have not expired are refused at
once (401 invalid_token, "revoked"), while tokens minted after a new sign-in work.

Everything goes through Better Auth's own HTTP API (revoke-sessions, revoke-session,
admin/ban-user), as an app's page or an admin would call it. The tests run in order on
one stack; the last one stops the gateway."""

from __future__ import annotations

import time

import httpx2 as httpx
import pytest

from stack import Stack, User, bearer, http_client, jwt_claims, jwt_via_cookie, sign_up, start_stack, wait_until

ADMIN_EMAIL = "admin-revocation@example.com"
ADMIN_PASSWORD = "pw-admin-revocation"


@pytest.fixture(scope="module")
def stack(workdir):
    s = start_stack(workdir / "revocation", name="revocation", extra_env={"DEMO_ADMIN_EMAILS": ADMIN_EMAIL})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def person(stack) -> dict:
    """One person, signed in again and again (Better Auth allows 3 sign-ins per 10 s),
    and what the tests pass on to the next one."""
    return {"first": sign_up(stack.web, label="everywhere")}


def sign_in(stack: Stack, user: User) -> User:
    """A new session of `user` (another browser): its cookies and session token."""
    with http_client() as client:
        response = client.post(
            f"{stack.web.url}/api/auth/sign-in/email", json={"email": user.email, "password": user.password}
        )
        assert response.status_code == 200, f"sign-in: {response.status_code} {response.text[:300]}"
        return User(
            email=user.email,
            password=user.password,
            session_token=response.json()["token"],
            user_id=user.user_id,
            cookies=httpx.Cookies(client.cookies),
        )


def auth_post(stack: Stack, user: User, path: str, body: dict | None = None) -> httpx.Response:
    """A POST to Better Auth from the app's own page (its Origin, the session cookie)."""
    with http_client(cookies=user.cookies) as client:
        return client.post(f"{stack.web.url}/api/auth{path}", json=body or {}, headers={"Origin": stack.web.url})


def gateway_answer(stack: Stack, token: str) -> httpx.Response:
    with stack.gateway.client() as gw:
        return gw.get("/api/tasks", headers=bearer(token))


def assert_revoked(stack: Stack, token: str) -> None:
    """Refused within a second (polled), although the token has not expired."""
    seen: dict[str, httpx.Response] = {}

    def refused() -> bool:
        seen["r"] = gateway_answer(stack, token)
        return seen["r"].status_code == 401

    wait_until("the gateway to refuse the JWT", refused, timeout=1.0, interval=0.05)
    challenge = seen["r"].headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and 'error_description="revoked"' in challenge, challenge
    assert jwt_claims(token)["exp"] > time.time(), "the JWT expired: the refusal proves nothing"


def at_start_of_a_second() -> None:
    """Waits (polling the clock) until the current second has most of it left, so what
    follows happens within one second of `iat` granularity."""
    wait_until("the start of a second", lambda: time.time() % 1 < 0.3, timeout=2.0, interval=0.01)


def test_sign_out_everywhere_refuses_every_session_and_a_new_sign_in_works(stack, person):
    phone = person["first"]
    laptop = sign_in(stack, phone)
    laptop_jwt = jwt_via_cookie(stack.web, laptop)
    assert gateway_answer(stack, laptop_jwt).status_code == 200
    assert jwt_claims(laptop_jwt)["sid"] != jwt_claims(jwt_via_cookie(stack.web, phone))["sid"]

    # A token minted in the same second as the revocation, just before it, is refused
    # too: Better Auth's `iat` is in whole seconds, and the app revokes up to the end of
    # the current one.
    at_start_of_a_second()
    phone_jwt = jwt_via_cookie(stack.web, phone)
    ended = auth_post(stack, phone, "/revoke-sessions")
    revoked_at = time.time()
    assert ended.status_code == 200, ended.text
    assert jwt_claims(phone_jwt)["iat"] == int(revoked_at), "not the same second: the test proves less"

    assert_revoked(stack, laptop_jwt)
    assert_revoked(stack, phone_jwt)
    # Better Auth agrees: neither browser has a session any more.
    with http_client(cookies=laptop.cookies) as client:
        assert client.get(f"{stack.web.url}/api/auth/token").status_code == 401

    # A new sign-in: its JWTs, issued after the revocation's second, pass.
    again = sign_in(stack, phone)
    fresh: dict[str, str] = {}

    def issued_after_revocation() -> bool:
        fresh["jwt"] = jwt_via_cookie(stack.web, again)
        return jwt_claims(fresh["jwt"])["iat"] > revoked_at

    wait_until("a JWT issued after the revocation's second", issued_after_revocation, timeout=2.0, interval=0.1)
    response = gateway_answer(stack, fresh["jwt"])
    assert response.status_code == 200, response.text
    assert gateway_answer(stack, laptop_jwt).status_code == 401
    person["current"] = again


def test_revoking_one_session_refuses_its_tokens_only(stack, person):
    kept = person["current"]
    other = sign_in(stack, kept)
    kept_jwt = jwt_via_cookie(stack.web, kept)
    other_jwt = jwt_via_cookie(stack.web, other)
    assert gateway_answer(stack, other_jwt).status_code == 200

    # From the kept session (a "your devices" page): end the other one.
    ended = auth_post(stack, kept, "/revoke-session", {"token": other.session_token})
    assert ended.status_code == 200, ended.text

    assert_revoked(stack, other_jwt)
    # The same user's other session is untouched: its token, and new ones, pass.
    assert gateway_answer(stack, kept_jwt).status_code == 200
    assert gateway_answer(stack, jwt_via_cookie(stack.web, kept)).status_code == 200


@pytest.fixture(scope="module")
def admin(stack) -> User:
    with http_client() as client:
        response = client.post(
            f"{stack.web.url}/api/auth/sign-up/email",
            json={"name": "admin", "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return User(ADMIN_EMAIL, ADMIN_PASSWORD, body["token"], body["user"]["id"], httpx.Cookies(client.cookies))


def test_a_banned_user_is_refused_at_once(stack, person, admin):
    user = sign_up(stack.web, label="banned")
    user_jwt = jwt_via_cookie(stack.web, user)
    assert gateway_answer(stack, user_jwt).status_code == 200
    assert jwt_claims(jwt_via_cookie(stack.web, admin))["role"] == "admin"

    banned = auth_post(stack, admin, "/admin/ban-user", {"userId": user.user_id})
    assert banned.status_code == 200, banned.text

    assert_revoked(stack, user_jwt)
    # The admin's own tokens are not affected.
    assert gateway_answer(stack, jwt_via_cookie(stack.web, admin)).status_code == 200
    person["banned"] = user.user_id


def test_without_the_gateway_sign_out_everywhere_and_ban_fail_visibly(stack, person, admin):
    user = person["current"]
    stack.gateway.proc.stop()

    # Sign out everywhere: refused before any session ends, so the person can retry.
    ended = auth_post(stack, user, "/revoke-sessions")
    assert ended.status_code >= 500, ended.text
    with http_client(cookies=user.cookies) as client:
        assert client.get(f"{stack.web.url}/api/auth/token").status_code == 200, "the session ended anyway"

    # A ban (the user is banned already, with no session left): the admin is told.
    again = auth_post(stack, admin, "/admin/ban-user", {"userId": person["banned"]})
    assert again.status_code == 503, again.text
    assert again.json()["code"] == "GATEWAY_REVOCATION_FAILED"
    assert "try again" in again.json()["message"]

    # A plain sign-out still signs the person out (the JWT then lives until its exp).
    out = auth_post(stack, user, "/sign-out")
    assert out.status_code == 200, out.text
    with http_client(cookies=user.cookies) as client:
        assert client.get(f"{stack.web.url}/api/auth/token").status_code == 401
