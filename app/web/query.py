"""Query strings: each ``/api`` route's query string is checked by the model it documents.

A route declares its query string once, with quart-schema's ``document_querystring(Model)``;
:func:`check_query` runs before every request of the API blueprints, reads that model off the
route and validates the query string with it, so the OpenAPI document and the check cannot
differ. The route then reads the typed values with :func:`query_args`. A route that
documents no query string takes none.

What is refused, always as a 422 ``{"error", "field"}`` naming the query key:

- a key the route does not document (as unknown keys of a JSON body are);
- a key given twice (``?limit=1&limit=2``): which one was meant is a guess;
- a number that is not plain ASCII digits (:data:`QueryInt`): ``²``, fullwidth digits,
  ``1e3``, ``0x10``, `` 1``, ``1.0``, ``+1`` and the empty string, which ``int()`` or
  pydantic's lax mode would take or turn into a server error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict
from quart import current_app, g, request
from quart_schema.validation import QUART_SCHEMA_QUERYSTRING_ATTRIBUTE
from werkzeug.datastructures import MultiDict

from app.errors import SpecError
from app.validation import validate

Q = TypeVar("Q", bound=BaseModel)

_INTEGER = re.compile(r"-?[0-9]+")
# Longer than any bound a query parameter has; int() of thousands of digits is slow.
_MAX_DIGITS = 24
_G_KEY = "socketlab_query"


def _whole_number(value: Any) -> Any:
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise ValueError("must be a whole number written in ASCII digits")
        if len(value) > _MAX_DIGITS:
            raise ValueError("is out of range")
        return int(value)
    return value


# An integer in a query string: ASCII digits with an optional minus sign, nothing else.
# Bounds go before ASCII_INTEGER in an Annotated (``Annotated[int, Field(ge=1),
# ASCII_INTEGER] | None``): after it, inside an optional, pydantic's JSON schema says "ge"
# instead of "minimum".
ASCII_INTEGER = BeforeValidator(_whole_number)
QueryInt = Annotated[int, ASCII_INTEGER]


class NoQuery(BaseModel):
    """The query string of a route that documents none: empty."""

    model_config = ConfigDict(extra="forbid")


def parse_query(model: type[Q], args: MultiDict[str, str]) -> Q:
    """``args`` validated by ``model``.

    Raises:
        SpecError: A key given twice, unknown or with a bad value, naming the key.
    """
    data: dict[str, str] = {}
    for key, values in args.lists():
        if len(values) > 1:
            raise SpecError(f"{key}: give this query parameter once", key)
        data[key] = values[0]
    return validate(model, data, noun="query parameter")


async def check_query() -> None:
    """Validate the request's query string by its route's documented model (a
    ``before_request`` hook of the API blueprints); the result is for :func:`query_args`."""
    view = current_app.view_functions.get(request.endpoint or "")
    model: type[BaseModel] = getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, NoQuery)
    setattr(g, _G_KEY, parse_query(model, request.args))


def query_args(model: type[Q]) -> Q:
    """The request's query string as validated by :func:`check_query`.

    Raises:
        TypeError: ``model`` is not the one the route documents (a bug, not a user error).
    """
    parsed = g.get(_G_KEY)
    if not isinstance(parsed, model):
        raise TypeError(f"the route documents {type(parsed).__name__}, not {model.__name__}")
    return parsed
