"""The packet tool's routes: saved packets, sends that are logged instead of stored as runs,
and the send log. Token-protected like every ``/api`` route (the factory checks it)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from quart import Blueprint, current_app, request
from quart_schema import document_querystring, document_request, document_response

from app.errors import NotFoundError, SpecError
from app.runs.spec import RunSpec, parse_run_spec
from app.validation import validate
from app.web import security
from app.web.openapi import document_empty
from app.web.packet_schemas import (
    PacketLog,
    PacketLogCleared,
    PacketLogEntry,
    PacketLogQuery,
    PacketSendBody,
    SavedPacket,
    SavedPacketBody,
    SavedPacketList,
)
from app.web.query import check_query, query_args
from app.web.schemas import document_errors

if TYPE_CHECKING:
    from app.packets import PacketTool

packets_api = Blueprint("packets_api", __name__, url_prefix="/api")
packets_api.before_request(check_query)


def _tool() -> PacketTool:
    tool: PacketTool = current_app.config["deps"].packets
    return tool


def packet_spec(
    target: str, payload: str, hex_payload: bool, timeout: float, insecure: bool = False
) -> RunSpec:
    """The ``packet`` run spec of one send, with errors naming this API's ``payload``.

    Raises:
        SpecError: The target or payload is refused, naming the field.
    """
    body = {
        "target": target,
        "pattern": "packet",
        "timeout": timeout,
        "insecure": insecure,
        "payload": {"kind": "hex" if hex_payload else "text", "text": payload},
    }
    try:
        return parse_run_spec(body)
    except SpecError as exc:
        if exc.field is not None and exc.field.startswith("payload"):
            raise SpecError(exc.message.replace("payload.text", "payload"), "payload") from None
        raise


@packets_api.get("/packets")
@document_response(SavedPacketList)
@document_errors(503)
async def list_saved_packets() -> dict[str, Any]:
    """Saved packets, by name."""
    return {"items": await _tool().store.list_packets()}


@packets_api.post("/packets")
@document_request(SavedPacketBody)
@document_response(SavedPacket, 201)
@document_response(SavedPacket, 200)
@document_errors(409, 415, 422, 503)
async def save_packet() -> tuple[dict[str, Any], int]:
    """Save (or replace, by name) a packet: target, payload as text or hex, timeout.

    The target and payload must be ones ``POST /api/packets/send`` would take; 409 when a
    new name would pass the cap on saved packets.
    """
    body = validate(SavedPacketBody, await request.get_json(silent=True))
    name = body.name.strip()
    if not name:
        raise SpecError("name: give the packet a name", "name")
    packet_spec(body.target, body.payload, body.hex, body.timeout)
    packet = body.model_dump() | {"name": name}
    now = time.time()
    created = await _tool().store.put_packet(packet, now)
    saved = next(p for p in await _tool().store.list_packets() if p["name"] == name)
    return saved, 201 if created else 200


@packets_api.delete("/packets/<name>")
@document_empty(204, "deleted")
@document_errors(404, 503)
async def delete_saved_packet(name: str) -> tuple[str, int]:
    """Delete a saved packet."""
    if not await _tool().store.delete_packet(name):
        raise NotFoundError(f"no saved packet {name!r}", "name")
    return "", 204


@packets_api.post("/packets/send")
@document_request(PacketSendBody)
@document_response(PacketLogEntry)
@document_errors(409, 415, 422, 503)
async def send_logged_packet() -> dict[str, Any]:
    """Send one message and answer with its log entry: the reply, or why there is none.

    No run is made (``POST /api/send`` makes one); the send goes to the send log
    (``GET /api/packet-log``). ``status`` is ``reply``, ``no_reply`` or ``error``, with the
    error kind (``refused``, ``reset``, ``tls``, ...) and the reason in words.
    """
    body = validate(PacketSendBody, await request.get_json(silent=True))
    spec = packet_spec(body.target, body.payload, body.hex, body.timeout, body.insecure)
    settings = current_app.config["deps"].settings
    return await _tool().send(
        spec,
        name=body.name,
        principal=security.principal(settings, request),
        client=request.remote_addr,
    )


@packets_api.get("/packet-log")
@document_querystring(PacketLogQuery)
@document_response(PacketLog)
@document_errors(422, 503)
async def packet_log() -> dict[str, Any]:
    """The packet tool's send log, newest first: what was sent, when, and what came back."""
    return {"items": await _tool().store.log(query_args(PacketLogQuery).limit)}


@packets_api.delete("/packet-log")
@document_response(PacketLogCleared)
@document_errors(503)
async def clear_packet_log() -> dict[str, Any]:
    """Delete the whole send log."""
    return {"deleted": await _tool().store.clear_log()}
