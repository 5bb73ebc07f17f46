"""app/validation.py: pydantic errors become one line naming the field as the user wrote it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from app.errors import SpecError
from app.validation import spec_error_from, user_path, validate


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["text", "hex"] = "text"
    text: str | None = None

    @model_validator(mode="after")
    def _needs_text(self) -> Inner:
        if self.kind == "hex" and not self.text:
            raise ValueError("inner.text: give the hex")
        return self


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    size: int = Field(1, ge=1)
    inner: Inner = Field(default_factory=Inner)
    items: list[int] = Field(default_factory=list)
    low: int = 0
    high: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> Outer:
        if self.high < self.low:
            raise ValueError("high: must be at least low")
        return self


class Rate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: Literal["rate"]
    rate: float


class Pingpong(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: Literal["pingpong"]
    in_flight: int = 1


Tagged = TypeAdapter(Annotated[Rate | Pingpong, Field(discriminator="pattern")])


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({}, "name", "name: required"),
        ({"name": ""}, "name", "name: "),
        ({"name": "a", "size": 0}, "size", "size: "),
        ({"name": "a", "size": "big"}, "size", "size: "),
        ({"name": "a", "colour": "red"}, "colour", "colour: unknown field"),
        ({"name": "a", "inner": {"kind": "hex"}}, "inner.text", "inner.text: give the hex"),
        ({"name": "a", "inner": {"kind": "rot13"}}, "inner.kind", "inner.kind: "),
        ({"name": "a", "inner": {"extra": 1}}, "inner.extra", "inner.extra: unknown field"),
        ({"name": "a", "items": [1, "x"]}, "items.1", "items.1: "),
        ({"name": "a", "low": 2, "high": 1}, "high", "high: must be at least low"),
    ],
)
def test_a_model_error_names_the_json_path(data: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        validate(Outer, data)
    assert info.value.field == field
    assert info.value.message.startswith(words), info.value.message
    assert info.value.status == 422


@pytest.mark.parametrize("data", [None, [], "x", 3])
def test_an_input_that_is_not_an_object_names_the_body(data: Any) -> None:
    with pytest.raises(SpecError) as info:
        validate(Outer, data)
    assert info.value.field == "body"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # The union's tag ("rate", "pingpong") is pydantic's segment, not the user's field,
        # even when a field has the same name as the tag.
        ({"pattern": "rate", "rate": "fast"}, "rate"),
        ({"pattern": "rate"}, "rate"),
        ({"pattern": "pingpong", "rate": 5}, "rate"),
        ({"pattern": "pingpong", "in_flight": "x"}, "in_flight"),
        ({"pattern": "rate", "rate": 1, "in_flight": 2}, "in_flight"),
    ],
)
def test_a_tagged_union_error_names_the_field_not_the_tag(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Tagged.validate_python(data)
    error = spec_error_from(info.value, data)
    assert error.field == field
    assert error.message.startswith(f"{field}: ")


def test_a_spec_error_raised_in_a_validator_keeps_its_words() -> None:
    class Checked(BaseModel):
        target: str

        @model_validator(mode="after")
        def _check(self) -> Checked:
            raise SpecError("target: no such host", "target")

    with pytest.raises(SpecError) as info:
        validate(Checked, {"target": "x"})
    assert (info.value.message, info.value.field) == ("target: no such host", "target")


@pytest.mark.parametrize(
    ("loc", "data", "path"),
    [
        ((), {}, None),
        (("a",), {}, "a"),
        (("a", "b"), {"a": {}}, "a.b"),
        (("function-after[_check(), Outer]", "a"), {"a": 1}, "a"),
        (("a", 0, "b"), {"a": [{"b": 1}]}, "a.0.b"),
    ],
)
def test_user_path_keeps_only_the_users_keys(
    loc: tuple[str | int, ...], data: dict[str, Any], path: str | None
) -> None:
    assert user_path(loc, data) == path


def test_without_the_input_only_pydantics_own_segments_are_dropped() -> None:
    assert user_path(("function-after[_check(), Outer]", "payload", "text")) == "payload.text"
    assert user_path(("items", 3)) == "items.3"
