"""A gateway configured by OpenID Connect discovery alone: Better Auth with the OAuth
provider plugin (OIDC_DISCOVERY=1) publishes {issuer}/.well-known/openid-configuration,
and the gateway finds the keys from the issuer, with no jwks_url."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack import (
    Process,
    _base_env,
    bearer,
    free_port,
    gateway_bin,
    http_client,
    jwt_claims,
    jwt_via_bearer,
    sign_up,
    start_tasks,
    start_web,
    wait_http_ok,
    wait_until,
)


@pytest.fixture(scope="module")
def services(workdir):
    """One Better Auth app whose jwt issuer is {app}/api/auth, and one task service."""
    root = workdir / "discovery"
    root.mkdir(exist_ok=True)
    started: list[Process] = []
    try:
        port = free_port()
        web = start_web(
            root,
            name="discovery",
            public_url=f"http://127.0.0.1:{port}",
            issuer=f"http://127.0.0.1:{port}/api/auth",
            extra_env={"OIDC_DISCOVERY": "1"},
            port=port,
        )
        started.append(web.proc)
        tasks = start_tasks(root, name="discovery")
        started.append(tasks.proc)
        wait_http_ok(f"{web.url}/api/health", proc=web.proc, timeout=60)
        wait_http_ok(f"{tasks.url}/healthz", proc=tasks.proc, timeout=30)
        yield root, web, tasks
    finally:
        for proc in reversed(started):
            proc.stop()


def start_discovery_gateway(root: Path, *, name: str, provider: str, tasks_url: str):
    listen_port, admin_port = free_port(), free_port()
    config_path = root / f"{name}-portcullis.toml"
    config_path.write_text(
        f"""\
[server]
listen = "127.0.0.1:{listen_port}"
admin_listen = "127.0.0.1:{admin_port}"

[[providers]]
name = "better-auth"
{provider}
refresh_cooldown = "1s"

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "{tasks_url}"
auth = "required"
"""
    )
    env = {**_base_env(), "RUST_LOG": os.environ.get("RUST_LOG", "info"), "NO_COLOR": "1"}
    proc = Process(
        f"portcullis:{name}",
        [str(gateway_bin()), "--config", str(config_path)],
        env=env,
        cwd=root,
        log_path=root / f"{name}-portcullis.log",
    )
    return f"http://127.0.0.1:{listen_port}", f"http://127.0.0.1:{admin_port}", proc


def test_the_gateway_finds_better_auths_keys_by_discovery_alone(services):
    root, web, tasks = services
    issuer = f"{web.url}/api/auth"
    with http_client() as client:
        document = client.get(f"{issuer}/.well-known/openid-configuration").json()
    assert document["issuer"] == issuer
    assert document["jwks_uri"] == f"{issuer}/jwks"

    url, admin_url, proc = start_discovery_gateway(
        root,
        name="discovery-ok",
        provider=f'issuer = "{issuer}"\ndiscovery = true\naudiences = ["{web.url}"]',
        tasks_url=tasks.url,
    )
    try:
        wait_http_ok(f"{admin_url}/readyz", proc=proc, timeout=30)
        alice = sign_up(web, label="alice")
        token = jwt_via_bearer(web, alice)
        assert jwt_claims(token)["iss"] == issuer
        with http_client(base_url=url) as gw:
            created = gw.post("/api/tasks", json={"title": "found by discovery"}, headers=bearer(token))
            assert created.status_code == 201, created.text
            listed = gw.get("/api/tasks", headers=bearer(token))
            assert listed.status_code == 200
            assert [t["title"] for t in listed.json()] == ["found by discovery"]
            assert gw.get("/api/tasks").status_code == 401
    finally:
        proc.stop()


def test_a_document_naming_another_issuer_is_not_trusted(services):
    root, web, tasks = services
    # The gateway expects the app's base URL as issuer, but the document says {app}/api/auth.
    url, admin_url, proc = start_discovery_gateway(
        root,
        name="discovery-wrong-issuer",
        provider=(
            f'issuer = "{web.url}"\n'
            f'discovery_url = "{web.url}/api/auth/.well-known/openid-configuration"\n'
            f'audiences = ["{web.url}"]'
        ),
        tasks_url=tasks.url,
    )
    try:
        log_path = root / "discovery-wrong-issuer-portcullis.log"
        wait_until(
            "the gateway to refuse the document",
            lambda: "its keys are not trusted" in log_path.read_text(errors="replace"),
            timeout=30,
            proc=proc,
        )
        bob = sign_up(web, label="bob")
        token = jwt_via_bearer(web, bob)
        before = tasks.request_count()
        with http_client() as client:
            assert client.get(f"{admin_url}/readyz").status_code == 503
            refused = client.get(f"{url}/api/tasks", headers=bearer(token))
        # Refused before any upstream call (its `iss` is not the configured issuer either).
        assert refused.status_code == 401
        assert tasks.request_count() == before
    finally:
        proc.stop()
