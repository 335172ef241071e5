"""Clock-driven behaviour: JWKS key rotation in Better Auth and token expiry.

Both tests poll the real services and bound every wait; none sleeps blindly.
"""

from __future__ import annotations

import time

import pytest

from stack import bearer, jwt_claims, jwt_header, jwt_via_bearer, sign_up, start_stack, wait_until

pytestmark = pytest.mark.slow

# Better Auth's jwt plugin stamps each key with expiresAt = createdAt + rotationInterval
# and mints a replacement lazily, on the first signing after that moment. Expired keys
# stay in the JWKS for gracePeriod (default 30 days).
ROTATION_INTERVAL = 6  # seconds
ROTATION_TOKEN_LIFETIME = 12  # seconds; must outlive the rotation by a few seconds
ROTATION_LEEWAY = 1

EXPIRY_TOKEN_LIFETIME = 5
EXPIRY_LEEWAY = 2


def gateway_status(gw, token: str) -> int:
    return gw.get("/api/tasks", headers=bearer(token)).status_code


@pytest.fixture(scope="module")
def rotation_stack(workdir):
    stack = start_stack(
        workdir / "rotation",
        name="rotation",
        expiration=f"{ROTATION_TOKEN_LIFETIME}s",
        rotation_interval=ROTATION_INTERVAL,
        leeway=f"{ROTATION_LEEWAY}s",
    )
    yield stack
    stack.stop()


def test_key_rotation(rotation_stack):
    stack = rotation_stack
    user = sign_up(stack.web, label="rotator")

    old_token = jwt_via_bearer(stack.web, user)
    old_kid = jwt_header(old_token)["kid"]
    old_exp = jwt_claims(old_token)["exp"]

    with stack.gateway.client() as gw:
        assert gateway_status(gw, old_token) == 200

        # Ask Better Auth for tokens until one is signed by a new key. The new key is
        # created on the first signing after the old key's rotation interval ran out.
        fresh: dict[str, str] = {}

        def rotated() -> bool:
            token = jwt_via_bearer(stack.web, user)
            if jwt_header(token)["kid"] != old_kid:
                fresh["token"] = token
                return True
            return False

        wait_until("Better Auth to rotate its signing key", rotated, timeout=ROTATION_INTERVAL + 15, interval=0.25)
        new_token = fresh["token"]
        new_kid = jwt_header(new_token)["kid"]
        kids = {k["kid"] for k in stack.web.jwks()["keys"]}
        assert {old_kid, new_kid} <= kids, "the JWKS should publish both keys during the grace period"
        assert time.time() < old_exp, "the old token expired before the rotation; lengthen its lifetime"

        # The gateway has never seen the new kid (it fetched the JWKS when it started,
        # before the new key existed): it must refetch and accept on first sight.
        before = stack.tasks.request_count()
        response = gw.post("/api/tasks", json={"title": "signed by the new key"}, headers=bearer(new_token))
        assert response.status_code == 201, response.text
        assert response.json()["user_id"] == user.user_id
        assert stack.tasks.request_count() == before + 1

        # Tokens minted before the rotation keep working until their own exp ...
        assert gateway_status(gw, old_token) == 200

        refused_at: dict[str, float] = {}

        def old_token_refused() -> bool:
            if gateway_status(gw, old_token) == 401:
                refused_at["t"] = time.time()
                return True
            return False

        wait_until(
            "the pre-rotation token to expire",
            old_token_refused,
            timeout=max(0.0, old_exp - time.time()) + ROTATION_LEEWAY + 5,
            interval=0.2,
        )
        # ... and not longer: refused because it expired, not because its key vanished.
        assert refused_at["t"] >= old_exp, "the pre-rotation token was refused before its exp"
        assert old_kid in {k["kid"] for k in stack.web.jwks()["keys"]}
        assert time.time() < jwt_claims(new_token)["exp"]
        assert gateway_status(gw, new_token) == 200


@pytest.fixture(scope="module")
def expiry_stack(workdir):
    stack = start_stack(
        workdir / "expiry",
        name="expiry",
        expiration=f"{EXPIRY_TOKEN_LIFETIME}s",
        leeway=f"{EXPIRY_LEEWAY}s",
    )
    yield stack
    stack.stop()


def test_expired_token_is_refused_after_exp_plus_leeway(expiry_stack):
    stack = expiry_stack
    user = sign_up(stack.web, label="shortlived")
    token = jwt_via_bearer(stack.web, user)
    claims = jwt_claims(token)
    exp = claims["exp"]
    assert exp - claims["iat"] == EXPIRY_TOKEN_LIFETIME

    accepted_after_exp = False
    first_refusal: float | None = None
    with stack.gateway.client() as gw:
        assert gateway_status(gw, token) == 200
        deadline = exp + EXPIRY_LEEWAY + 5
        while time.time() < deadline:
            sent_at = time.time()
            status = gateway_status(gw, token)
            if status == 401:
                first_refusal = sent_at
                break
            assert status == 200, status
            if sent_at > exp:
                accepted_after_exp = True
            time.sleep(0.2)  # poll interval

        assert first_refusal is not None, "the expired token was still accepted well after exp + leeway"
        # Accepted through the leeway window, refused soon after it.
        assert first_refusal >= exp + EXPIRY_LEEWAY - 0.05, (
            f"refused {exp + EXPIRY_LEEWAY - first_refusal:.2f}s before exp + leeway"
        )
        assert first_refusal <= exp + EXPIRY_LEEWAY + 2.0
        assert accepted_after_exp, "the leeway was not honoured"

        # The refusal happened at the gateway.
        before = stack.tasks.request_count()
        assert gateway_status(gw, token) == 401
        assert stack.tasks.request_count() == before

        # A fresh token for the same session works again.
        assert gateway_status(gw, jwt_via_bearer(stack.web, user)) == 200
