"""``/openapi.json`` and the offline API docs at ``/docs``, through quart-schema.

Routes are documented with quart-schema's documentation-only decorators
(``document_request``, ``document_querystring``, ``document_response``): the API keeps its own
validation and its ``{"error", "field"}`` error shape, and the request models are the ones that
validate (``RunSpec``), so the schema says what the server really accepts.

What this module adds to quart-schema's generator:

- only ``/api/...`` routes and ``/metrics`` are documented (the dashboard page is not an API);
- each operation is tagged by its first path segment (``/api/runs/...`` → ``runs``);
- every operation documents its 403 answer (the Host and Origin checks), every
  authenticated operation its 401, every operation with a request body its 413 (the
  body limit), and every ``/api`` operation its 422 (the query string check);
- routes that answer text declare it with :func:`document_text`, and answers without a
  body with :func:`document_empty`.

Answers: quart-schema also wraps the application's ``make_response`` to turn models into
JSON-ready values, and does so for a plain dict or list too, by building a pydantic
``TypeAdapter`` for it and walking every value: a schema built per request (an eighth of an
``/api/health`` request's time) and a walk of all 10,000 rows of ``/api/connections``. The
routes here answer dicts and lists that are JSON-ready already (built by ``to_dict`` and
``summary`` methods, never holding models), so :func:`install_openapi` lets those through
unconverted and leaves everything else to quart-schema.

Auth: ``/openapi.json`` and ``/docs`` are served without a token, like ``/api/health``. They
describe the code, which is public, and hold no state of the lab; serving them openly lets
API clients and generators fetch the schema, and lets a person read the docs before logging
in. Every operation they describe still needs the token (the Swagger page's "Authorize"
button takes it). Swagger UI's script and stylesheet are served from ``static/vendor``, so the
page works with no internet access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from quart import Blueprint, current_app, render_template
from quart_schema import HttpSecurityScheme, Info, OpenAPIProvider, QuartSchema, Tag, hide
from quart_schema.openapi import APIKeySecurityScheme
from werkzeug.routing import Rule

from app import __version__
from app.web.schemas import ErrorResponse
from app.web.security import COOKIE_NAME

if TYPE_CHECKING:
    from quart_trio import QuartTrio

T = TypeVar("T", bound=Callable[..., Any])

SWAGGER_JS = "/static/vendor/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = "/static/vendor/swagger-ui/swagger-ui.css"
_TEXT_ATTRIBUTE = "_socketlab_text_response"
_EMPTY_ATTRIBUTE = "_socketlab_empty_responses"
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]


def document_text(media_type: str, description: str) -> Callable[[T], T]:
    """Document a 200 answer in a text ``media_type`` (``/metrics``; CSV exports).

    Alongside a JSON 200 documented with ``document_response``, the text form is offered as
    a second content type of the same response.
    """

    def decorator(func: T) -> T:
        setattr(func, _TEXT_ATTRIBUTE, (media_type, description))
        return func

    return decorator


def document_empty(status_code: int, description: str) -> Callable[[T], T]:
    """Document an answer without a body (``204 No Content``)."""

    def decorator(func: T) -> T:
        empty = dict(getattr(func, _EMPTY_ATTRIBUTE, {}))
        empty[status_code] = description
        setattr(func, _EMPTY_ATTRIBUTE, empty)
        return func

    return decorator


def is_documented_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


# The HTTP layer (h11) answers a request it cannot parse (a space or control character in the
# target, a malformed header) itself, before any route runs: 400 with an empty body.
MALFORMED_REQUEST = "the HTTP layer could not parse the request line or a header (empty body)"


def _common_errors(path: str, operation: dict[str, Any]) -> Iterator[tuple[int, str]]:
    """The error answers an operation has because of the checks every request passes."""
    # Every request passes the Host check, and every write the Origin check.
    yield 403, "the Host header is not allowed, or a write came from another Origin"
    if operation.get("security") != []:
        yield 401, "missing or wrong token"
    if "requestBody" in operation:
        yield 413, "the body is larger than the API accepts (64 KiB)"
    if path.startswith("/api/"):
        # app.web.query checks every API query string, parameters or not.
        yield 422, "a query parameter the operation does not take, given twice, or invalid"


class SocketlabOpenAPIProvider(OpenAPIProvider):
    """quart-schema's generator, limited to the API and with the additions listed above."""

    def generate_rules(self) -> Iterable[Rule]:
        for rule in super().generate_rules():
            if is_documented_path(rule.rule):
                yield rule

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        text = getattr(func, _TEXT_ATTRIBUTE, None)
        parts = rule.rule.strip("/").split("/")
        group = parts[1] if parts[0] == "api" and len(parts) > 1 else parts[0]
        for operations in paths.values():
            for operation in operations.values():
                operation.setdefault("tags", [group])
                responses = operation["responses"] = dict(operation["responses"])
                if text is not None:
                    media_type, description = text
                    ok = responses[200] = dict(responses.get(200, {"description": description}))
                    ok["content"] = {
                        **ok.get("content", {}),
                        media_type: {"schema": {"type": "string"}},
                    }
                for status, description in getattr(func, _EMPTY_ATTRIBUTE, {}).items():
                    responses[status] = {"description": description}
                responses.setdefault(400, {"description": MALFORMED_REQUEST})
                for status, description in _common_errors(rule.rule, operation):
                    if status not in responses:
                        response, extra = self.build_response_object(ErrorResponse, None)
                        response["description"] = description
                        responses[status] = response
                        components.update(extra)
        return paths, components


docs = Blueprint("docs", __name__)


@docs.get("/docs")
@hide
async def swagger_ui() -> str:
    """Swagger UI over ``/openapi.json``.

    quart-schema's own page has no doctype and names a preset the bundle does not ship; this
    one is a standards-mode page with the same configurable asset URLs.
    """
    config = current_app.config
    return await render_template(
        "docs.html",
        openapi_url="/openapi.json",
        swagger_js_url=config["QUART_SCHEMA_SWAGGER_JS_URL"],
        swagger_css_url=config["QUART_SCHEMA_SWAGGER_CSS_URL"],
    )


def install_openapi(web: QuartTrio) -> QuartSchema:
    """Serve ``/openapi.json`` and ``/docs`` (Swagger UI from local assets) on ``web``."""
    web.config["QUART_SCHEMA_SWAGGER_JS_URL"] = SWAGGER_JS
    web.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = SWAGGER_CSS
    web.register_blueprint(docs)
    plain = web.make_response
    schema = QuartSchema(
        web,
        openapi_path="/openapi.json",
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(
            title="socketlab",
            version=__version__,
            description="A network traffic lab: TCP/UDP listeners, test traffic runs and their "
            "live measurements. Send the token as `Authorization: Bearer TOKEN`.",
        ),
        security_schemes={
            "bearerAuth": HttpSecurityScheme(scheme="bearer"),
            "cookieAuth": APIKeySecurityScheme(in_="cookie", name=COOKIE_NAME),
        },
        security=SECURITY,
        tags=[
            Tag(name="health", description="Is the lab up"),
            Tag(name="listeners", description="Servers that echo, sink, respond or collect"),
            Tag(name="connections", description="Live TCP connections and UDP flows"),
            Tag(name="runs", description="Test traffic and its measurements"),
            Tag(name="metrics", description="For Prometheus"),
        ],
        openapi_provider_class=SocketlabOpenAPIProvider,
    )
    converting = web.make_response  # quart-schema's wrapper (see Answers above)

    async def make_response(result: Any) -> Any:
        value = result[0] if isinstance(result, tuple) else result
        if isinstance(value, dict | list):
            return await plain(result)
        return await converting(result)

    web.make_response = make_response  # type: ignore[method-assign]
    return schema
