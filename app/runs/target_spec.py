"""A run's ``target`` field: parsed once into an :class:`~app.endpoint.Endpoint`.

Every pattern's model (:mod:`app.runs.spec`) annotates its target with :data:`Target`:
pydantic calls :meth:`Endpoint.parse` once at validation (its errors name ``target``), the
engine and the flows read the parsed endpoint, and JSON, stored specs and the OpenAPI
document see the endpoint's URL, a plain string.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from app.endpoint import Endpoint


def _to_endpoint(value: Any) -> Endpoint:
    # Looked up on the class at each call, so a test can count the parses.
    if isinstance(value, Endpoint):
        return value
    if not isinstance(value, str):
        raise ValueError("target: give a URL such as tcp://127.0.0.1:9000")
    return Endpoint.parse(value, field="target")


# A run's target: parsed once into an Endpoint, written back as its URL (JSON, OpenAPI).
Target = Annotated[
    Endpoint,
    PlainValidator(_to_endpoint),
    PlainSerializer(lambda endpoint: endpoint.url, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "tcp://host:port, udp://host:port or tls://host:port",
            "examples": ["tcp://127.0.0.1:9000"],
        }
    ),
]
