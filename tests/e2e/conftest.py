from __future__ import annotations

from pathlib import Path

import pytest

from stack import ALGORITHMS, sign_up, start_stack, start_web, wait_http_ok

# Imported by name so pytest runs them as this suite's own hooks.
from session_hooks import pytest_runtest_makereport, pytest_sessionfinish, pytest_sessionstart  # noqa: E402,F401


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def main_stack(workdir):
    """EdDSA stack used by the identity and rejection tests."""
    stack = start_stack(workdir / "main", name="main")
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def main_users(main_stack):
    """Two users of the main stack (Better Auth allows 3 sign-ups per 10 s per client)."""
    return sign_up(main_stack.web, label="alice"), sign_up(main_stack.web, label="bob")


@pytest.fixture(scope="session")
def foreign_web(workdir, main_stack):
    """A second Better Auth instance: different secret, database and keys, but it
    stamps the main instance's issuer and audience into its tokens."""
    (workdir / "foreign").mkdir(exist_ok=True)
    web = start_web(
        workdir / "foreign",
        name="foreign",
        issuer=main_stack.web.url,
        audience=main_stack.web.url,
    )
    try:
        wait_http_ok(f"{web.url}/api/health", proc=web.proc, timeout=60)
        yield web
    finally:
        web.proc.stop()


@pytest.fixture(scope="module", params=ALGORITHMS)
def alg_stack(request, workdir):
    """One stack per signing algorithm of Better Auth's jwt plugin."""
    alg = request.param
    stack = start_stack(workdir / f"alg-{alg}", name=f"alg-{alg}", alg=alg)
    yield stack
    stack.stop()
