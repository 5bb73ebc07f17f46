"""Build the Quart-Trio application (``web``) over a lab's :class:`~app.web.deps.WebDeps`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, redirect, render_template, request, websocket
from quart.wrappers import BaseRequestWebsocket
from quart_trio import QuartTrio
from quart_trio.wrappers.request import TrioRequest
from werkzeug.exceptions import BadHost, HTTPException
from werkzeug.routing import MapAdapter

from app import __version__
from app.errors import SocketlabError
from app.runs.form import run_form
from app.telemetry.points import FACILITIES, SEVERITIES
from app.web import security
from app.web.api import api
from app.web.compare_api import compare_api
from app.web.events_api import events_api
from app.web.feed import Feed
from app.web.history_api import history_api
from app.web.listeners_api import listeners_api
from app.web.live import live
from app.web.mesh_api import mesh_api
from app.web.metrics import install_metrics
from app.web.openapi import install_openapi
from app.web.packets_api import packets_api
from app.web.peers_api import peers_api
from app.web.runs_api import runs_api
from app.web.scenarios_api import scenarios_api
from app.web.telemetry_api import telemetry_api
from app.wire import jsondoc

if TYPE_CHECKING:
    from app.web.deps import WebDeps

logger = logging.getLogger(__name__)

# API request bodies are small JSON documents; anything larger is refused before parsing.
MAX_BODY_BYTES = 64 * 1024


def asset_dir(name: str) -> Path:
    """templates/ or static/: inside the installed package, or at the top of a checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / name
    return packaged if packaged.is_dir() else here.parent / name


def error_response(status: int, message: str, field: str | None = None) -> Response:
    response = jsonify({"error": message, "field": field})
    response.status_code = status
    return response


class LabRequest(TrioRequest):
    """Quart's request, whose body is parsed by :func:`app.wire.jsondoc.loads`: strict
    UTF-8 JSON, bounded in depth.

    Quart's own ``get_json`` catches ``ValueError`` only, so a deeply nested body (the
    decoder's ``RecursionError``) and one that is not UTF-8 (Quart's ``UnicodeDecodeError``)
    were 500s with a traceback on every JSON route. Here every body that is not a JSON
    document gives None with ``silent`` (the routes answer 422 naming ``body``), and goes
    to ``on_json_loading_failed`` without. The parsed document is not cached: each route
    reads its body once.
    """

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not (force or self.is_json):
            return None
        data = await self.get_data(cache=cache, as_text=False)
        try:
            return jsondoc.loads(data)
        except ValueError as error:
            if silent:
                return None
            return self.on_json_loading_failed(error)


class LabWeb(QuartTrio):
    """QuartTrio, where a Host that werkzeug cannot route reaches the Host check.

    werkzeug IDNA-encodes the Host while the request context is built, before any handler
    runs, and a name it cannot encode (an empty label: ``localhost..``; a label longer than
    63 bytes) escaped as a 500 with a traceback. Without a URL adapter the request goes on
    to ``guard_request``/``guard_websocket``, which refuse that Host (403) as they refuse
    every Host :func:`app.web.security.split_host` does not take.
    """

    def create_url_adapter(self, request: BaseRequestWebsocket | None) -> MapAdapter | None:
        try:
            return super().create_url_adapter(request)
        except BadHost:
            return None


def create_web(deps: WebDeps, feed: Feed | None = None) -> QuartTrio:
    """The dashboard, the JSON API and the live feeds over ``deps``.

    ``feed`` is the dashboard's live state (a new one when not given); whoever serves the
    application runs its tick loop (:func:`app.web.server.serve_web`).
    """
    web = LabWeb(
        "socketlab",
        template_folder=str(asset_dir("templates")),
        static_folder=str(asset_dir("static")),
    )
    web.request_class = LabRequest
    web.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    web.config["deps"] = deps
    web.config["feed"] = feed if feed is not None else Feed(deps)
    web.register_blueprint(api)
    web.register_blueprint(live)
    install_metrics(web, deps)
    install_openapi(web)
    web.register_blueprint(runs_api)
    web.register_blueprint(history_api)
    web.register_blueprint(peers_api)
    web.register_blueprint(events_api)
    web.register_blueprint(packets_api)
    web.register_blueprint(listeners_api)
    web.register_blueprint(scenarios_api)
    web.register_blueprint(compare_api)
    web.register_blueprint(telemetry_api)
    web.register_blueprint(mesh_api)
    settings = deps.settings

    def _auth_ok() -> bool:
        token = settings.token
        presented = security.bearer_token(request.headers.get("Authorization"))
        if presented is None:
            presented = request.cookies.get(security.COOKIE_NAME)
        return security.token_matches(token, presented)

    @web.before_request
    async def guard_request() -> Response | None:
        if not security.host_allowed(settings, request.headers.get("Host")):
            return error_response(403, "this Host is not allowed", "Host")
        path = request.path
        if request.method in security.MUTATING_METHODS and not security.origin_allowed(
            settings, request.headers.get("Origin"), request.headers.get("Host"), request.scheme
        ):
            return error_response(403, "cross-origin request refused", "Origin")
        if (path.startswith("/api/") and path != "/api/health") or path == "/metrics":
            if not _auth_ok():
                return error_response(401, "missing or wrong token", "Authorization")
            if request.method in security.MUTATING_METHODS and not security.body_is_json(
                request.mimetype,
                request.content_length,
                request.headers.get("Transfer-Encoding"),
            ):
                return error_response(415, "send the body as application/json", "Content-Type")
        return None

    @web.before_websocket
    async def guard_websocket() -> Response | None:
        headers = websocket.headers
        if not security.host_allowed(settings, headers.get("Host")):
            return error_response(403, "this Host is not allowed", "Host")
        if not security.origin_allowed(
            settings, headers.get("Origin"), headers.get("Host"), websocket.scheme
        ):
            return error_response(403, "cross-origin WebSocket refused", "Origin")
        token = settings.token
        presented = security.bearer_token(headers.get("Authorization"))
        if presented is None:
            presented = websocket.cookies.get(security.COOKIE_NAME)
        if not security.token_matches(token, presented):
            return error_response(401, "missing or wrong token", "Authorization")
        return None

    @web.after_request
    async def harden(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if deps.shutdown.is_set():
            # Hypercorn keeps idle keep-alive connections open at shutdown otherwise.
            response.headers["Connection"] = "close"
        return response

    @web.errorhandler(SocketlabError)
    async def domain_error(exc: SocketlabError) -> Response:
        return error_response(exc.status, exc.message, exc.field)

    @web.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Any:
        if request.path.startswith("/api/") or request.path == "/ws":
            return error_response(exc.code or 500, exc.description or exc.name)
        return exc

    @web.get("/")
    async def index() -> Any:
        token = request.args.get("token")
        if token is not None:
            if not security.token_matches(settings.token, token):
                return await render_template("login.html", failed=True), 401
            # Move the token from the URL into an HttpOnly cookie, out of history and logs.
            response = redirect("/", 303)
            response.set_cookie(
                security.COOKIE_NAME,
                token,
                httponly=True,
                samesite="Strict",
                path="/",
            )
            return response
        if not _auth_ok():
            return await render_template("login.html", failed=False), 401
        return await render_template(
            "index.html",
            version=__version__,
            run_form=run_form(),
            syslog_facilities=FACILITIES,
            syslog_severities=SEVERITIES,
        )

    return web
