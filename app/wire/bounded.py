"""An HTTP body read within bounds: its bytes on the wire and its bytes once decoded.

Theory of operation: a :class:`BoundedBody` is fed a body's bytes as they arrive (after the
transfer framing, which is the HTTP parser's job) and keeps the decoded content. It knows
the content codings a peer may send: identity, ``gzip`` and ``deflate``; any other coding is
refused when the body starts, since what it expands to could not be bounded.

Decompression asks zlib for at most the room left under ``max_decoded`` plus one byte per
step (``max_length``), so a small compressed body that expands a thousandfold never takes
more memory than the cap: a 200 KB gzip bomb stops at the cap, not at 200 MB. The raw
bytes are counted too, so a body stops at ``max_raw`` whatever its coding.

States: *feeding* (:meth:`BoundedBody.feed`, any number of times), then *finished*
(:meth:`BoundedBody.finish` returns the decoded bytes). Anything wrong raises from ``feed``
or ``finish``: :class:`BodyTooLargeError` past a cap, ``ValueError`` for a coding this
module does not read or a corrupt or truncated compressed body; the body is then dropped.
"""

from __future__ import annotations

import zlib

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_CODINGS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _ZLIB}


class BodyTooLargeError(ValueError):
    """A body has more bytes (on the wire or decoded) than its cap allows."""


class BoundedBody:
    """A body being received: counted raw, decoded in bounded steps, kept until finished.

    Args:
        content_encoding: The ``Content-Encoding`` header's value (``None``: identity).
        max_raw: The most bytes the body may have as received.
        max_decoded: The most bytes it may have once decoded.

    Raises:
        ValueError: The coding is not identity, gzip or deflate (or several are stacked).
    """

    def __init__(self, content_encoding: str | None, *, max_raw: int, max_decoded: int) -> None:
        coding = (content_encoding or "").strip().lower()
        self.coding = coding or "identity"
        self.max_raw = max_raw
        self.max_decoded = max_decoded
        self.raw_bytes = 0
        self.decoded_bytes = 0
        self._parts: list[bytes] = []
        self._inflate: zlib._Decompress | None = None
        if self.coding != "identity":
            wbits = _CODINGS.get(self.coding)
            if wbits is None:
                raise ValueError(f"content coding {self.coding!r} is not one this lab reads")
            self._inflate = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body.

        Raises:
            BodyTooLargeError: The body passed ``max_raw`` or, decoded, ``max_decoded``.
            ValueError: The compressed body is corrupt.
        """
        self.raw_bytes += len(data)
        if self.raw_bytes > self.max_raw:
            raise BodyTooLargeError(f"the answer is larger than {self.max_raw:,} bytes")
        if self._inflate is None:
            self._keep(data)
            return
        while data:
            data = self._inflate_step(data)

    def _inflate_step(self, data: bytes) -> bytes:
        """Inflate what fits under the cap (one byte over it, to see it passed); the rest."""
        assert self._inflate is not None
        if self._inflate.eof:
            if self.coding == "deflate":
                raise ValueError("the deflate body has bytes after its end")
            # A gzip body may be several members one after the other (RFC 1952 2.2).
            self._inflate = zlib.decompressobj(_GZIP)
        room = self.max_decoded - self.decoded_bytes + 1
        try:
            out = self._inflate.decompress(data, room)
        except zlib.error as exc:
            raise ValueError(f"the {self.coding} body is corrupt ({exc})") from None
        self._keep(out)
        if self._inflate.eof:
            return self._inflate.unused_data
        return self._inflate.unconsumed_tail

    def _keep(self, out: bytes) -> None:
        self.decoded_bytes += len(out)
        if self.decoded_bytes > self.max_decoded:
            raise BodyTooLargeError(
                f"the answer is larger than {self.max_decoded:,} bytes once decoded "
                f"({self.coding}, {self.raw_bytes:,} bytes received)"
            )
        if out:
            self._parts.append(out)

    def finish(self) -> bytes:
        """The whole decoded body, once every byte was fed.

        Raises:
            ValueError: A compressed body ended before its end (a truncated answer).
        """
        if self._inflate is not None and not self._inflate.eof:
            raise ValueError(f"the {self.coding} body is truncated")
        body = b"".join(self._parts)
        self._parts = []
        return body
