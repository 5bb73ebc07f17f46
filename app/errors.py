"""The domain's error tree.

Every error a user can cause carries the name of the field that was wrong, so the API can
answer ``{"error": ..., "field": ...}`` and the CLI can print one clear line.
"""

# A message quotes what the user sent (an id, a name, a line): past this many characters it
# is cut, so a 20 kB id does not come back as a 20 kB error.
MAX_MESSAGE = 500


class SocketlabError(Exception):
    """Base of every error socketlab raises on purpose.

    Args:
        message: What is wrong, in words a user understands; cut at :data:`MAX_MESSAGE`
            characters.
        field: The input field (API body key, CLI option, URL part) that caused it.
    """

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        return {"error": self.message, "field": self.field}


class SpecError(SocketlabError):
    """A listener URL, run spec or setting does not validate."""

    status = 422


class NotFoundError(SocketlabError):
    """An id names nothing that exists."""

    status = 404


class ConflictError(SocketlabError):
    """The request is valid but the current state does not allow it."""

    status = 409


class BindError(ConflictError):
    """An address the lab was told to serve on at start-up is taken or cannot be bound;
    ``field`` names the setting that gave it (``web``, ``listen``)."""


class TargetNotAllowedError(SocketlabError):
    """A run's target resolves to an address the target policy refuses."""

    status = 403


class ProtocolError(SocketlabError):
    """Bytes on the wire that a sans-IO parser cannot accept."""


class LineError(ProtocolError, ValueError):
    """A line of a line protocol (StatsD, DogStatsD) that its parser cannot accept.

    Args:
        message: What is wrong with the line.
        line: The offending line, as received.
    """

    def __init__(self, message: str, line: bytes) -> None:
        super().__init__(message, "line")
        self.line = line


class StoreUnavailableError(SocketlabError):
    """The store cannot write now (a full disk, a lock held elsewhere); retried in the
    background, so the request can be made again later."""

    status = 503


class DataDirError(SocketlabError):
    """The data directory cannot hold the lab's database (one line, said at start-up)."""
