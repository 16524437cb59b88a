"""The operator console under /ui: server-rendered pages (Jinja2) with a little plain JavaScript shipped in
the package (static/console.js), served by the API process. One router for the app to include."""

from __future__ import annotations

from fastapi import APIRouter

from workers.entrypoints.console import lists, new_campaign, pages, static

router = APIRouter()
router.include_router(static.router)
router.include_router(new_campaign.router)  # /ui/campaigns/new before pages' /ui/campaigns/{id}
router.include_router(pages.router)
router.include_router(lists.router)
