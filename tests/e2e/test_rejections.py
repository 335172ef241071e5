"""Requests without a valid Better Auth token are answered 401 by the gateway and
never reach the task service (checked on the service's own request counter)."""

from __future__ import annotations

import json

import pytest

from stack import (
    b64url_decode,
    b64url_encode,
    bearer,
    jwt_claims,
    jwt_header,
    jwt_via_bearer,
    jwt_via_cookie,
    sign_up,
)


@pytest.fixture(scope="module")
def tokens(main_stack, main_users):
    victim, attacker = main_users
    return {
        "victim_id": victim.user_id,
        "attacker_jwt": jwt_via_bearer(main_stack.web, attacker),
    }


def tamper_claims(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims.update(changes)
    return ".".join([header, b64url_encode(json.dumps(claims, separators=(",", ":")).encode()), signature])


def flip_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([header, payload, b64url_encode(bytes(raw))])


def alg_none(token: str) -> str:
    header = dict(jwt_header(token), alg="none")
    _, payload, _ = token.split(".")
    return ".".join([b64url_encode(json.dumps(header).encode()), payload, ""])


def assert_refused_without_reaching_service(stack, cases):
    before = stack.tasks.request_count()
    for label, headers in cases:
        for method, path, body in (
            ("GET", "/api/tasks", None),
            ("POST", "/api/tasks", {"title": "should never be stored"}),
            ("DELETE", "/api/tasks/1", None),
        ):
            # One connection per request: connection reuse after an early refusal is
            # covered on its own in test_http.py.
            with stack.gateway.client() as gw:
                response = gw.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, f"{label}: {method} {path} answered {response.status_code}"
            assert "bearer" in response.headers.get("www-authenticate", "").lower(), label
    assert stack.tasks.request_count() == before, "a refused request reached the task service"


def test_missing_or_malformed_credentials(main_stack):
    assert_refused_without_reaching_service(
        main_stack,
        [
            ("no Authorization header", {}),
            ("bearer without a token", {"Authorization": "Bearer"}),
            ("lowercase scheme, garbage", {"Authorization": "bearer x.y.z"}),
            ("not a JWT", {"Authorization": "Bearer not-a-jwt"}),
            ("basic auth", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
            ("identity header only", {"X-User-Id": "someone"}),
        ],
    )


def test_tampered_tokens(main_stack, tokens):
    token = tokens["attacker_jwt"]
    # Sanity: the untampered token works.
    with main_stack.gateway.client() as gw:
        assert gw.get("/api/tasks", headers=bearer(token)).status_code == 200
    assert_refused_without_reaching_service(
        main_stack,
        [
            ("sub swapped to another user", bearer(tamper_claims(token, sub=tokens["victim_id"]))),
            ("exp pushed into the future", bearer(tamper_claims(token, exp=jwt_claims(token)["exp"] + 86400))),
            ("signature bit flipped", bearer(flip_signature(token))),
            ("signature removed", bearer(token.rsplit(".", 1)[0] + ".")),
            ("alg none", bearer(alg_none(token))),
        ],
    )


def test_token_from_another_better_auth_instance(main_stack, foreign_web):
    """Same issuer and audience, but signed by a different instance's keys."""
    stranger = sign_up(foreign_web, label="stranger")
    foreign_jwt = jwt_via_cookie(foreign_web, stranger)
    claims = jwt_claims(foreign_jwt)
    assert claims["iss"] == main_stack.web.url and claims["aud"] == main_stack.web.url
    assert jwt_header(foreign_jwt)["kid"] not in {k["kid"] for k in main_stack.web.jwks()["keys"]}

    # Also with the kid of a real key of the main instance: the signature still does not match.
    main_kid = main_stack.web.jwks()["keys"][0]["kid"]
    h, p, s = foreign_jwt.split(".")
    relabelled = ".".join(
        [b64url_encode(json.dumps(dict(jwt_header(foreign_jwt), kid=main_kid)).encode()), p, s]
    )

    assert_refused_without_reaching_service(
        main_stack,
        [
            ("foreign instance token", bearer(foreign_jwt)),
            ("foreign token relabelled with a known kid", bearer(relabelled)),
        ],
    )
