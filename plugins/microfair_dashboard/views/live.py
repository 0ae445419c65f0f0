"""Live updates (``/events``, server-sent events) and the static files, both behind authentication."""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import AsyncIterator
from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, StreamingResponse

from microfair_dashboard.deps import FacilityDep, Loaded
from microfair_dashboard.security import Reader

router = APIRouter()
STATIC = Path(__file__).resolve().parents[1] / "static"


@router.get("/events")
async def events(request: Request, user: Reader, fac: FacilityDep, loaded: Loaded) -> StreamingResponse:
    cfg, _ = loaded

    async def stream() -> AsyncIterator[str]:
        last = None
        yield f"retry: {cfg.dashboard.refresh_seconds * 1000}\n\n"
        while not await request.is_disconnected():
            token = await to_thread.run_sync(fac.token)
            if token != last:
                if last is not None:
                    yield f"event: ledger\ndata: {token}\n\n"
                last = token
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(cfg.dashboard.refresh_seconds)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/static/{path:path}")
def static(path: str, user: Reader) -> FileResponse:
    real = Path(os.path.realpath(STATIC / path))
    if not real.is_relative_to(STATIC.resolve()) or not real.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return FileResponse(real, media_type=mimetypes.guess_type(real.name)[0] or "application/octet-stream",
                        headers={"Cache-Control": "private, max-age=3600"})
