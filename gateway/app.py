"""The gateway's FastAPI application: ``create_app(config)``.

``create_app`` takes the config and, for tests, the publisher and Graph client to use (default: the official
Pub/Sub client and the Graph API at ``config.meta_graph_url``). The OpenAPI document is served at
``/openapi.json`` and committed at docs/gateway-openapi.json (``python -m gateway.openapi`` writes it).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway import api_v1, leads, webhooks
from gateway.body_limit import BodyLimit
from gateway.clients import API_KEY_HEADER, ClientRegistry
from gateway.config import GatewayConfig
from gateway.door import RETRY_AFTER_SECONDS, Door
from gateway.idempotency import StateUnavailable
from gateway.meta_graph import GraphClient
from gateway.publishing import Publisher, PubSubPublisher
from gateway.status import BigQueryLeadStatus, LeadStatusReader

TITLE = "Leadflow ingestion gateway"
VERSION = "1.0.0"
UPLOADS_PATH = "/v1/uploads"


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=TITLE, version=VERSION, routes=app.routes, description=__doc__.split("\n")[0])
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Lead"] = leads.LEAD_SCHEMA
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
        }
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(config: GatewayConfig, *, publisher: Publisher | None = None,
               graph: GraphClient | None = None, status: LeadStatusReader | None = None) -> FastAPI:
    door = Door(
        config=config,
        publisher=publisher if publisher is not None else PubSubPublisher(config.publish_timeout),
        graph=graph if graph is not None else GraphClient(
            config.meta_graph_url, config.meta_page_access_token, attempts=config.meta_fetch_attempts,
            backoff=config.meta_fetch_backoff),
        clients=ClientRegistry(config.api_clients),
        status=status if status is not None else (
            BigQueryLeadStatus(config.status_dataset) if config.status_dataset else None),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await door.graph.close()
        door.publisher.close()

    app = FastAPI(title=TITLE, version=VERSION, lifespan=lifespan)
    app.state.door = door
    app.include_router(webhooks.router)
    app.include_router(api_v1.router)

    @app.get("/healthz", tags=["operations"], summary="liveness")
    async def healthz():
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse,
             summary="request counts by endpoint and outcome (Prometheus text format)")
    async def metrics():
        return PlainTextResponse(door.metrics_text())

    @app.exception_handler(StateUnavailable)
    async def state_unavailable(request: Request, exc: StateUnavailable):  # nothing was published: retry
        door.count("gateway", "state_unavailable")
        return JSONResponse({"error": "state_unavailable"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # never echo the exception: it may hold a body
        door.count("gateway", "internal_error")
        return JSONResponse({"error": "internal_error"}, status_code=500)

    app.openapi = lambda: _openapi(app)

    def limit_for(path: str) -> int:
        return config.max_upload_bytes if path == UPLOADS_PATH else config.max_body_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for,
                       on_refused=lambda path: door.count("gateway", "rejected_too_large"))
    return app
