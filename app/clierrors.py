"""The command line's errors as one line each: what a user reads instead of a traceback.

An error of ours (:class:`~app.errors.SocketlabError`) may come alone or in a group from a
nursery (a lab that could not bind, a run whose target the policy refuses):
:func:`socketlab_error` finds it, :func:`error_line` says it, naming the option or flag.
"""

from __future__ import annotations

import os
import re
import sys
from typing import NoReturn

from app.errors import BindError, SocketlabError, SpecError
from app.runs.options import option_message

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# The flag to change for an address the lab could not serve on (BindError.field).
_BIND_FLAGS = {"web": "--web HOST:PORT", "listen": "--listen URL"}


def usage_error(message: str) -> NoReturn:
    """Say ``message`` as the one line on stderr and exit with status 2 (bad usage)."""
    sys.stderr.write(f"socketlab: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def socketlab_error(exc: BaseException) -> SocketlabError | None:
    """The error of ours ``exc`` is, or the first of a group (a nursery's) that has one."""
    while isinstance(exc, BaseExceptionGroup):
        matched = exc.subgroup(SocketlabError)
        if matched is None:
            return None
        exc = matched.exceptions[0]
    return exc if isinstance(exc, SocketlabError) else None


def error_line(error: SocketlabError) -> str:
    """The one line a user reads for ``error``: a spec error names the option, a port
    taken names the flag that moves it (as ``make run ARGS=...`` under make)."""
    if isinstance(error, SpecError):
        return option_message(error)
    if isinstance(error, BindError) and error.field in _BIND_FLAGS:
        flag = _BIND_FLAGS[error.field]
        # Set by the Makefile's run target (not MAKELEVEL: `make test` runs serve too).
        if os.environ.get("SOCKETLAB_MAKE_RUN"):
            flag = f"make run ARGS='{flag}'"
        return f"{error.message}; choose another with {flag}"
    return error.message


def check_lab_url(text: str, option: str) -> None:
    """Refuse a lab URL (``--via``, ``stop-all --url``) that is not ``http(s)://host[:port]``.

    Raises:
        SpecError: Naming ``option``; a token in the URL is not repeated.
    """
    # Imported here: app.peers brings the web schemas (pydantic, Quart), most of a second
    # of CPU that `socketlab fire` and `send` would otherwise pay at every start.
    from app.peers import parse_peer

    try:
        parse_peer(text, None)
    except SpecError:
        shown = re.sub(r"//[^/@]*@", "//", text.strip())
        raise SpecError(
            f"{option} {shown!r}: give the lab's URL, e.g. http://127.0.0.1:8000", option
        ) from None
