"""A FastAPI application whose lifespan owns a cluster and a session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _core_data import KEYSPACE, Data
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from cassnb import AsyncCluster, AsyncSession, CassandraError
from cassnb._core.registry import open_counts


def make_app(contact_points: list[str]) -> FastAPI:
    """Build the app: connect at startup, prepare once, close at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncCluster(contact_points) as cluster, cluster.connect(KEYSPACE) as session:
            app.state.session = session
            app.state.statements = {
                "get": await session.prepare("SELECT id, name, email FROM users WHERE id = ?"),
                "create": await session.prepare(
                    "INSERT INTO users (id, name, email) VALUES (?, ?, ?)"
                ),
            }
            yield
        app.state.closed = (session.is_closed, cluster.is_closed)

    app = FastAPI(lifespan=lifespan)

    @app.get("/users/{user_id}")
    async def get_user(user_id: str, request: Request) -> dict[str, Any]:
        try:
            key = uuid.UUID(user_id)
        except ValueError:
            raise HTTPException(status_code=400, detail="user id is not a UUID") from None
        session: AsyncSession = request.app.state.session
        try:
            user = (await session.execute(request.app.state.statements["get"], [key])).one()
        except CassandraError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        return {"id": str(user.id), "name": user.name, "email": user.email}

    @app.post("/users")
    async def create_user(name: str, email: str, request: Request) -> dict[str, str]:
        key = uuid.uuid4()
        session: AsyncSession = request.app.state.session
        await session.execute(request.app.state.statements["create"], [key, name, email])
        return {"id": str(key), "name": name, "email": email}

    @app.get("/count")
    async def count(request: Request) -> dict[str, int]:
        session: AsyncSession = request.app.state.session
        rows = await session.execute("SELECT c FROM paged WHERE p = 0")
        return {"rows": len(rows)}

    return app


def test_fastapi_app_with_lifespan(data: Data) -> None:
    # Sessions other suites keep open for the whole run are not the app's.
    sessions_before = open_counts().sessions
    app = make_app(data.contact_points)
    with TestClient(app) as client:
        created = client.post("/users", params={"name": "Grace", "email": "grace@example.org"})
        assert created.status_code == 200
        user_id = created.json()["id"]

        fetched = client.get(f"/users/{user_id}")
        assert fetched.status_code == 200
        assert fetched.json() == {"id": user_id, "name": "Grace", "email": "grace@example.org"}

        assert client.get(f"/users/{uuid.uuid4()}").status_code == 404
        assert client.get("/users/not-a-uuid").status_code == 400
        assert client.get("/count").json() == {"rows": data.paged_rows}
    assert app.state.closed == (True, True)
    assert open_counts().sessions == sessions_before
