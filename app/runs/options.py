"""The run spec as command-line options, generated from the spec models.

One option per model field (``--in-flight`` for ``in_flight``), with the field's description
as its help and the model's default shown; the payload's two fields are ``--payload`` (the
kind) and ``--text``. Options have no default of their own: :func:`spec_body` sends only what
the user gave, so the models' defaults are the only ones, and a field the chosen pattern
ignores is refused by the model like any other mistake; :func:`option_message` then names
the option instead of the JSON field.
"""

from __future__ import annotations

import argparse
import tomllib
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from app.errors import SpecError
from app.runs.payload_spec import PayloadSpec
from app.runs.spec import EXCLUSIVE, FIELD_PATTERNS, MODELS, PATTERNS
from app.wire import jsondoc

# A scenario file is a few kilobytes; this stops a wrong path from eating memory.
MAX_SCENARIO_FILE = 1024 * 1024

# Short names that scripts and the README already use.
_ALIASES = {"connections": ("--conns",)}
_METAVARS = {
    "connections": "N",
    "count": "N",
    "size": "BYTES",
    "size_max": "BYTES",
    "rate": "MSG/S",
    "bitrate": "BIT/S",
    "burst": "K",
    "in_flight": "K",
}
# Fields that are not options: the target is the URL argument, the payload is two options.
_NOT_OPTIONS = {"target", "payload"}
_PAYLOAD_OPTIONS = {"payload.kind": "--payload", "payload.text": "--text", "payload": "--payload"}


def option_name(field: str) -> str:
    """The option the user writes for a spec field (``in_flight`` → ``--in-flight``)."""
    if field in _PAYLOAD_OPTIONS:
        return _PAYLOAD_OPTIONS[field]
    if field == "target":
        return "URL"
    return "--" + field.replace("_", "-")


def option_message(exc: SpecError) -> str:
    """A spec error as one line that names the option rather than the JSON field."""
    if exc.field is None:
        return exc.message
    head, sep, rest = exc.message.partition(": ")
    if sep and head == exc.field:
        # A field inside a file's document (scenario.steps.3.send) keeps its path there.
        option, dot, inside = head.partition(".")
        if dot and option == "scenario":
            return f"{option_name(option)}: {inside}: {rest}"
        return f"{option_name(exc.field)}: {rest}"
    return exc.message


def _size(text: str) -> tuple[int, int | None]:
    low, sep, high = text.partition("-")
    try:
        return int(low), (int(high) if sep else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BYTES or MIN-MAX") from None


def _kind(info: FieldInfo) -> Any:
    annotation = info.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _help(name: str, info: FieldInfo, patterns: tuple[str, ...]) -> str:
    text = info.description or name
    default = info.get_default(call_default_factory=False)
    if default is not None and default is not PydanticUndefined and not isinstance(default, bool):
        text += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    users = [p for p in patterns if p in FIELD_PATTERNS.get(name, patterns)]
    others = [p for p in patterns if p not in users]
    if others and len(others) < len(users):
        text += f"; not for {' or '.join(others)}"
    elif others:
        text += f"; {' and '.join(users)} only"
    return text.replace("%", "%%")


def add_spec_options(
    parser: argparse.ArgumentParser, patterns: Iterable[str] = PATTERNS, *, payload: bool = True
) -> None:
    """Add one option per field of the given patterns' models (the union of their fields).

    ``payload=False`` leaves out ``--payload`` and ``--text``, for a command that takes the
    payload as an argument.
    """
    chosen = tuple(patterns)
    fields: dict[str, FieldInfo] = {}
    for pattern in chosen:
        for name, info in MODELS[pattern].model_fields.items():
            fields.setdefault(name, info)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for names in EXCLUSIVE:
        present = [name for name in names if name in fields]
        if len(present) > 1:
            group = parser.add_mutually_exclusive_group()
            groups.update(dict.fromkeys(present, group))
    for name, info in fields.items():
        if name in _NOT_OPTIONS or (name == "pattern" and len(chosen) == 1):
            continue
        target: Any = groups.get(name, parser)
        flags = [option_name(name), *_ALIASES.get(name, ())]
        common: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": _help(name, info, chosen),
        }
        kind = _kind(info)
        if name == "pattern":
            target.add_argument(*flags, choices=chosen, **common)
        elif name == "scenario":
            # Read when the spec is made (spec_body): a bad file is then one line, exit 2.
            target.add_argument(*flags, metavar="FILE", **common)
        elif kind is bool and info.default is None:
            # A yes/no whose default is decided at run time: --x and --no-x.
            target.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        elif kind is bool:
            target.add_argument(*flags, action="store_true", **common)
        else:
            if name == "size":
                kind = _size
                common["help"] = common["help"].replace(
                    "message size in bytes", "message size in bytes, or MIN-MAX for sizes that vary"
                )
            metavar = _METAVARS.get(name, "SECONDS" if kind is float else "N")
            target.add_argument(*flags, type=kind, metavar=metavar, **common)
    if payload and "payload" in fields:
        kinds = get_args(PayloadSpec.model_fields["kind"].annotation)
        assert get_origin(PayloadSpec.model_fields["kind"].annotation) is Literal
        parser.add_argument(
            "--payload",
            dest="payload_kind",
            choices=kinds,
            default=argparse.SUPPRESS,
            help=_help("payload", PayloadSpec.model_fields["kind"], chosen),
        )
        parser.add_argument(
            "--text",
            dest="payload_text",
            metavar="TEXT",
            default=argparse.SUPPRESS,
            help=_help("payload", PayloadSpec.model_fields["text"], chosen),
        )


def load_scenario_file(path: str) -> Any:
    """A scenario file's document: TOML for ``.toml``, JSON otherwise (``--scenario``).

    Raises:
        SpecError: It cannot be read or parsed; says why in one line (field ``scenario``).
    """

    def refuse(reason: str) -> SpecError:
        return SpecError(f"scenario: {reason}", "scenario")

    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_SCENARIO_FILE + 1)
    except OSError as exc:
        raise refuse(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SCENARIO_FILE:
        raise refuse(f"{path} is larger than {MAX_SCENARIO_FILE:,} bytes")
    try:
        if path.endswith(".toml"):
            return tomllib.loads(data.decode())
        return jsondoc.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise refuse(f"{path} is not a scenario file: {reason}") from None


def spec_body(target: str, args: argparse.Namespace) -> dict[str, Any]:
    """The run spec body of the options the user gave, and nothing else."""
    given = vars(args)
    body: dict[str, Any] = {"target": target}
    for name in FIELD_PATTERNS:
        if name in given and name not in _NOT_OPTIONS:
            body[name] = given[name]
    if isinstance(body.get("scenario"), str):
        body["scenario"] = load_scenario_file(body["scenario"])
    if isinstance(body.get("size"), tuple):
        body["size"], size_max = body["size"]
        if size_max is not None:
            body["size_max"] = size_max
    payload = {
        key: given[f"payload_{key}"] for key in ("kind", "text") if f"payload_{key}" in given
    }
    if payload:
        body["payload"] = payload
    return body
