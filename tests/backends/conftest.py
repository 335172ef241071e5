"""One Better Auth app and two users for the whole matrix; per backend, the backend
(started by its own documented run.sh) with a Portcullis in front of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends import BACKENDS, Caller, Guarded, start_backend
from stack import jwt_via_bearer, sign_up, start_gateway, start_web, wait_http_ok

# Imported by name so pytest runs them as this suite's own hooks.
from session_hooks import pytest_runtest_makereport, pytest_sessionfinish, pytest_sessionstart  # noqa: E402,F401


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="session")
def web(workdir):
    app = start_web(workdir, name="auth")
    try:
        wait_http_ok(f"{app.url}/api/health", proc=app.proc, timeout=60)
        yield app
    finally:
        app.proc.stop()


@pytest.fixture(scope="session")
def callers(web) -> tuple[Caller, Caller]:
    """Alice and Bob, each with a JWT from Better Auth."""
    users = sign_up(web, label="alice"), sign_up(web, label="bob")
    return tuple(Caller(user=u, jwt=jwt_via_bearer(web, u)) for u in users)


@pytest.fixture(scope="module", params=BACKENDS)
def guarded(request, workdir, web) -> Guarded:
    name = request.param
    backend = start_backend(name, workdir)
    gateway = None
    try:
        wait_http_ok(f"{backend.url}/healthz", proc=backend.proc, timeout=60)
        gateway = start_gateway(workdir, name=name, web=web, tasks=backend)
        wait_http_ok(f"{gateway.admin_url}/readyz", proc=gateway.proc, timeout=30)
        yield Guarded(backend=backend, gateway=gateway)
    finally:
        if gateway is not None:
            gateway.proc.stop()
        backend.proc.stop()
