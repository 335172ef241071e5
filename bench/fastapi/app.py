"""The FastAPI contender of bench/run.sh: no gateway, the backend verifies every token
itself with PyJWT (the JWKS fetched once at start), in a FastAPI dependency. Handlers
are async (sync ones would add a threadpool hop per request). Served by uvicorn, one
process. Routes mirror the shared upstream's: /public/* answers without a token, /api/*
needs one, /api/big streams 100 MB, PUT /api/upload reads the whole body.

Configured by BENCH_JWKS_URL, BENCH_ISSUER and BENCH_AUDIENCE.
"""

import json
import os
import urllib.request

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

ISSUER = os.environ["BENCH_ISSUER"]
AUDIENCE = os.environ["BENCH_AUDIENCE"]
with urllib.request.urlopen(os.environ["BENCH_JWKS_URL"], timeout=5) as r:
    KEYS = {k["kid"]: jwt.PyJWK(k) for k in json.load(r)["keys"]}

BIG = 100 * 1024 * 1024
CHUNK = b"\0" * (64 * 1024)

app = FastAPI()


async def current_user(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        raise HTTPException(401, "missing token", {"WWW-Authenticate": "Bearer"})
    token = auth[7:]
    try:
        key = KEYS[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(
            token,
            key,
            algorithms=[key.algorithm_name],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub"]},
        )
    except (jwt.PyJWTError, KeyError):
        raise HTTPException(401, "invalid token", {"WWW-Authenticate": "Bearer"}) from None
    return claims["sub"]


@app.get("/public/{rest:path}")
async def public(rest: str) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


@app.get("/api/big")
async def big(user: str = Depends(current_user)) -> StreamingResponse:
    async def body():
        for _ in range(BIG // len(CHUNK)):
            yield CHUNK

    return StreamingResponse(body(), media_type="application/octet-stream")


@app.put("/api/upload")
async def upload(request: Request, user: str = Depends(current_user)) -> PlainTextResponse:
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return PlainTextResponse(f"{n}\n", status_code=201)


@app.get("/api/{rest:path}")
async def private(rest: str, user: str = Depends(current_user)) -> PlainTextResponse:
    return PlainTextResponse("ok\n")
