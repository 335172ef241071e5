import ipaddress
import os
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from .db import DEFAULT_DATABASE_URL, Task, create_schema, make_engine, utcnow
from .schemas import AdminStats, TaskCreate, TaskOut, TaskPatch, TaskReplace
from .stats import RequestLog

USER_HEADER = "x-user-id"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def create_app(database_url: str | None = None, *, stats_enabled: bool | None = None) -> FastAPI:
    """Build the task service.

    database_url: SQLAlchemy URL (default: $DATABASE_URL, else sqlite:///tasks.db).
    stats_enabled: expose GET /__stats to loopback clients (default: $TASKS_STATS != "0").
    """
    url = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if stats_enabled is None:
        stats_enabled = os.environ.get("TASKS_STATS", "1") != "0"

    engine = make_engine(url)
    create_schema(engine)
    session_factory = sessionmaker(bind=engine, expire_on_commit=False)
    request_log = RequestLog()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.dispose()

    app = FastAPI(title="Portcullis demo task service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.request_log = request_log

    @app.middleware("http")
    async def count_api_requests(request: Request, call_next):
        if not request.url.path.startswith("/api/") and request.url.path != "/api":
            return await call_next(request)
        entry = request_log.record(
            request.method,
            request.url.path,
            request.url.query,
            list(request.scope.get("headers", [])),
        )
        response = await call_next(request)
        request_log.finish(entry, response.status_code)
        return response

    def get_session() -> Iterator[Session]:
        with session_factory() as session:
            yield session

    def current_user(request: Request) -> str:
        # The gateway sets exactly one X-User-Id after verifying the caller's JWT.
        values = request.headers.getlist(USER_HEADER)
        if len(values) != 1 or not values[0].strip():
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="missing or ambiguous X-User-Id",
            )
        return values[0].strip()

    DbSession = Annotated[Session, Depends(get_session)]
    UserId = Annotated[str, Depends(current_user)]
    TaskId = Annotated[int, Path(ge=1, le=2**63 - 1)]

    def owned_task(session: Session, user_id: str, task_id: int) -> Task:
        # Scoped by owner: another user's task is indistinguishable from a missing one.
        task = session.scalar(select(Task).where(Task.id == task_id, Task.user_id == user_id))
        if task is None:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="task not found")
        return task

    @app.get("/healthz", include_in_schema=False)
    def healthz(session: DbSession) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/__stats", include_in_schema=False)
    def stats(request: Request):
        if not stats_enabled or not _is_loopback(request.client.host if request.client else None):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return request_log.snapshot()

    @app.get("/api/tasks", response_model=list[TaskOut])
    def list_tasks(
        user_id: UserId,
        session: DbSession,
        completed: Annotated[bool | None, Query(description="only completed (true) or open (false) tasks")] = None,
    ):
        query = select(Task).where(Task.user_id == user_id)
        if completed is not None:
            query = query.where(Task.completed == completed)
        return session.scalars(query.order_by(Task.id)).all()

    @app.post("/api/tasks", response_model=TaskOut, status_code=status.HTTP_201_CREATED)
    def create_task(body: TaskCreate, user_id: UserId, session: DbSession, response: Response):
        now = utcnow()
        task = Task(
            user_id=user_id,
            title=body.title,
            description=body.description,
            completed=body.completed,
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        session.commit()
        response.headers["Location"] = f"/api/tasks/{task.id}"
        return task

    @app.get("/api/tasks/{task_id}", response_model=TaskOut)
    def get_task(task_id: TaskId, user_id: UserId, session: DbSession):
        return owned_task(session, user_id, task_id)

    @app.put("/api/tasks/{task_id}", response_model=TaskOut)
    def replace_task(task_id: TaskId, body: TaskReplace, user_id: UserId, session: DbSession):
        task = owned_task(session, user_id, task_id)
        task.title = body.title
        task.description = body.description
        task.completed = body.completed
        task.updated_at = utcnow()
        session.commit()
        return task

    @app.patch("/api/tasks/{task_id}", response_model=TaskOut)
    def update_task(task_id: TaskId, body: TaskPatch, user_id: UserId, session: DbSession):
        task = owned_task(session, user_id, task_id)
        changes = body.model_dump(exclude_unset=True)
        for field in ("title", "completed"):
            if field in changes and changes[field] is None:
                raise HTTPException(
                    status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                    detail=[{"loc": ["body", field], "msg": "may not be null", "type": "null_not_allowed"}],
                )
        if "description" in changes and changes["description"] is None:
            changes["description"] = ""
        for field, value in changes.items():
            setattr(task, field, value)
        if changes:
            task.updated_at = utcnow()
        session.commit()
        return task

    @app.patch("/api/tasks/{task_id}/complete", response_model=TaskOut)
    def toggle_complete(task_id: TaskId, user_id: UserId, session: DbSession):
        task = owned_task(session, user_id, task_id)
        task.completed = not task.completed
        task.updated_at = utcnow()
        session.commit()
        return task

    @app.delete("/api/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_task(task_id: TaskId, user_id: UserId, session: DbSession) -> Response:
        task = owned_task(session, user_id, task_id)
        session.delete(task)
        session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @app.get("/api/admin/stats", response_model=AdminStats)
    def admin_stats(_user_id: UserId, session: DbSession):
        # Who may ask is decided at the gateway (roles = ["admin"] on this route): the
        # service trusts the gateway for that as it does for X-User-Id. Counts only,
        # never another user's task contents.
        users, tasks, completed = session.execute(
            select(
                func.count(func.distinct(Task.user_id)),
                func.count(Task.id),
                func.count(Task.id).filter(Task.completed.is_(True)),
            )
        ).one()
        return AdminStats(users=users, tasks=tasks, completed=completed)

    return app
