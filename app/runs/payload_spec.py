"""What the bytes of a run's messages are: :class:`PayloadSpec`, a part of every run spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.wire.payload import PayloadError, make_payload, parse_escaped, parse_hex


class PayloadSpec(BaseModel):
    """What the bytes of each message are (the probe header overwrites the first 28)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["random", "zeros", "text", "hex"] = Field(
        "random", description="random bytes, zeros, repeated text (escapes allowed) or hex"
    )
    text: str | None = Field(
        None,
        max_length=65_536,
        description=r"for text: e.g. 'GET / HTTP/1.0\r\n\r\n'; for hex: 'de ad be ef'",
    )

    @model_validator(mode="after")
    def _text_parses(self) -> PayloadSpec:
        if self.kind in ("text", "hex") and not self.text:
            raise ValueError(f"payload.text: give the {self.kind} to send")
        if self.text is not None:
            try:
                data = (parse_hex if self.kind == "hex" else parse_escaped)(self.text)
            except PayloadError as exc:
                raise ValueError(f"payload.text: {exc}") from None
            if self.kind in ("text", "hex") and not data:
                # Hex of nothing but separators ("\x1f", spaces) is no bytes at all.
                raise ValueError(f"payload.text: the {self.kind} holds no bytes to send")
        return self

    def raw(self) -> bytes | None:
        """The bytes given by text or hex; ``None`` for random and zeros."""
        if self.kind == "hex":
            return parse_hex(self.text or "")
        if self.kind == "text":
            return parse_escaped(self.text or "")
        return None

    def build(self, size: int) -> bytes:
        return make_payload(self.kind, size, text=self.text)
