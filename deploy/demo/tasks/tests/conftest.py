from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from taskservice import create_app

ALICE = "user-alice-0001"
BOB = "user-bob-0002"


@pytest.fixture()
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'tasks.db'}"


@pytest.fixture()
def app(database_url):
    return create_app(database_url, stats_enabled=True)


@pytest.fixture()
def client(app):
    # TestClient reports its peer as "testclient", which is not loopback.
    with TestClient(app) as c:
        yield c


@pytest.fixture()
def loopback_client(app):
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        yield c


def as_user(user_id: str) -> dict[str, str]:
    return {"X-User-Id": user_id}


@pytest.fixture()
def make_task(client):
    def _make(user_id: str = ALICE, **fields):
        body = {"title": "a task", **fields}
        response = client.post("/api/tasks", json=body, headers=as_user(user_id))
        assert response.status_code == 201, response.text
        return response.json()

    return _make
