"""One translation from pydantic's validation errors to the API's ``{"error", "field"}``.

Every input a user gives (an API body, a query string, a WebSocket view message, CLI options,
a config file) is checked by a pydantic model, and every failure reaches the user through
:func:`spec_error_from`: one line naming the field in the user's words, which is the JSON path
of the input (``payload.text``, ``rules.0.match``), the query key, or the option name. It is
never a name only the code knows, such as the member of a union pydantic tried or the
validator function that raised.

Theory of operation: pydantic reports errors with a ``loc``, the path it walked, which holds
the user's keys but also segments of its own (a tagged union's tag, ``function-after[...]``
wrappers). Given the input, :func:`user_path` keeps only the segments that are keys (or list
indexes) of the input, so what is left is a path the user can find in what they sent.
Model-level checks cannot point pydantic at a field, so they start their message with it
(``"count: give duration or count, not both"``), and the translator takes the field from
there. A :class:`SpecError` raised inside a validator keeps its own message and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.errors import SpecError

M = TypeVar("M", bound=BaseModel)

# Our own words for the few pydantic messages that read badly to a user; the others are kept.
_MESSAGES = {
    "extra_forbidden": "unknown {noun}",
    "missing": "required",
}
_NO_DATA = object()


def _is_container(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes)
    )


def _in(container: Any, part: str | int) -> bool:
    if isinstance(container, Mapping):
        return part in container
    if isinstance(part, int) and _is_container(container):
        return 0 <= part < len(container)
    return False


def user_path(loc: Sequence[str | int], data: Any = _NO_DATA) -> str | None:
    """The dotted path of ``loc`` that names something in ``data``, or None for the whole.

    Segments that are not keys of the input are pydantic's own and are dropped; the last
    segment is kept even so, since a missing or unknown field is not (or only just) there.
    Descending happens only into containers: a tag that is also a key (a ``rate`` pattern
    tag before the ``rate`` field) does not lead the walk into a number. Without ``data``,
    only the segments pydantic marks as its own (``function-after[...]``, ``list[int]``)
    are dropped.
    """
    parts: list[str] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if current is _NO_DATA:
            if isinstance(part, int) or not any(c in part for c in "[(,"):
                parts.append(str(part))
            continue
        if _in(current, part):
            value = current[part]
            if last or _is_container(value):
                parts.append(str(part))
                current = value
        elif last and (isinstance(part, int) or not any(c in part for c in "[(,:")):
            # A missing or unknown key; a union's ``tag:`` or a wrapper is pydantic's own.
            parts.append(str(part))
    return ".".join(parts) or None


def _object_at(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``data`` (None when there is none)."""
    current = data
    for part in path.split("."):
        key: str | int = int(part) if part.isdigit() and not isinstance(current, Mapping) else part
        if not _in(current, key):
            return None
        current = current[key]
    return current


def spec_error_from(
    exc: ValidationError, data: Any = _NO_DATA, *, noun: str = "field"
) -> SpecError:
    """The first problem of a pydantic error as our one-line :class:`SpecError`.

    Args:
        exc: What pydantic raised.
        data: The input that was validated; with it, the field is a path in that input.
        noun: What an unknown key is called (``field``; ``query parameter``).

    Returns:
        ``SpecError("field: what is wrong", field)``; field is None when the problem is
        about the input as a whole.
    """
    first = exc.errors()[0]
    field = user_path(first.get("loc", ()), data)
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, SpecError):
        return SpecError(inner.message, field or inner.field)
    kind = str(first.get("type", ""))
    template = _MESSAGES.get(kind)
    if template is not None:
        message = template.format(noun=noun)
    else:
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    # Model-level checks say which field they are about as "field: message", the field
    # being the model's own (loc is empty) or one inside the field pydantic names.
    head, sep, rest = message.partition(": ")
    if sep and " " not in head:
        if field is None or head.startswith(field + "."):
            field, message = head, rest
        elif isinstance(_object_at(data, field), Mapping) and "." not in head:
            # A check of a nested object (a scenario's step) names a field of that object.
            field, message = f"{field}.{head}", rest
    return SpecError(f"{field}: {message}" if field else message, field)


def validate(model: type[M], data: Any, *, noun: str = "field", whole: str = "body") -> M:
    """``model`` validated from ``data`` (a JSON-like object), or our :class:`SpecError`.

    Args:
        model: The pydantic model that defines the input.
        data: What the user sent, decoded (a dict for a JSON object or a query string).
        noun: What an unknown key is called in the error.
        whole: The field named when ``data`` is not an object at all.

    Raises:
        SpecError: The first thing wrong, naming the field as the user wrote it.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{whole}: must be a JSON object", whole)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from(exc, data, noun=noun) from None
