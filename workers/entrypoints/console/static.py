"""The console's two static files, served from the package (no CDN, no build step)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from workers.entrypoints.console.web import HERE

router = APIRouter(prefix="/ui/static", include_in_schema=False)
FILES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}


@router.get("/{name}")
async def static_file(name: str) -> Response:
    if name not in FILES:
        return Response("not found", status_code=404)
    return Response((HERE / "static" / name).read_bytes(), media_type=FILES[name],
                    headers={"Cache-Control": "max-age=300"})
