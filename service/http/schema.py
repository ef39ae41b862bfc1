"""The API's one strict converter (JSON bodies, query strings) and its errors as field paths.

cattrs coerces by default (`"false"` becomes True, `1` becomes `"1"`): here every primitive
must already have its JSON type, unknown keys are refused, and every failure of a structuring
is collected (detailed validation) and turned into the problem's `errors` list, with paths of
the form `invitees[0].email`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, override

from service.errors import FieldError, ValidationFailed

T = TypeVar("T")
#: attrs field metadata: the name on the wire, when it cannot be the attribute's
WIRE_NAME = "wire_name"


class Invalid(ValueError):
    """A value the API refuses; each message is one entry of `errors` for its field."""

    def __init__(self, *messages: str) -> None:
        super().__init__(messages[0])
        self.messages = messages


def _strict(kind: type[Any], message: str) -> Any:
    def structure(value: Any, _: object) -> Any:
        # bool is an int to Python, never to JSON.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise Invalid(message)
        return value

    return structure


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _strict(str, "must be a string"))
    conv.register_structure_hook(int, _strict(int, "must be an integer"))
    conv.register_structure_hook(bool, _strict(bool, "must be true or false"))

    def object_hook(cls: type[Any]) -> Any:
        renames = {
            name: override(rename=wire_name(cls, name))
            for name in attrs.fields_dict(cls)
            if wire_name(cls, name) != name
        }
        generated = make_dict_structure_fn(cls, conv, **renames)  # type: ignore[arg-type]

        def structure(value: Any, _: object) -> Any:
            if not isinstance(value, dict):
                raise Invalid("must be an object")
            return generated(value, cls)

        return structure

    conv.register_structure_hook_factory(attrs.has, object_hook)
    return conv


converter = _make_converter()


def structure(data: Any, cls: type[T], *, unknown: str = "unknown field") -> T:
    """`data` as a `cls`; ValidationFailed lists every bad field (`unknown` for extra keys)."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # every failure of a structuring is the caller's input
        raise ValidationFailed(field_errors(exc, unknown=unknown)) from None


def wire_name(cls: type[Any], attribute: str) -> str:
    """The JSON key or query parameter of an attribute: its name, unless its metadata says
    otherwise (`from` is a keyword, so its attribute is `from_`)."""
    name: str = attrs.fields_dict(cls)[attribute].metadata.get(WIRE_NAME, attribute)
    return name


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def field_errors(exc: BaseException, *, unknown: str, path: str = "") -> list[FieldError]:
    """Walk cattrs' exception groups (as `cattrs.transform_error` does) into FieldErrors."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        out = []
        for inner, note in with_notes:
            name = wire_name(exc.cl, note.name)
            out += field_errors(inner, unknown=unknown, path=_join(path, name))
        for inner in without:
            out += field_errors(inner, unknown=unknown, path=path)
        return out
    if isinstance(exc, IterableValidationError):
        with_index, without = exc.group_exceptions()
        out = []
        for inner, index_note in with_index:
            out += field_errors(inner, unknown=unknown, path=f"{path}[{index_note.index}]")
        for inner in without:
            out += field_errors(inner, unknown=unknown, path=path)
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        return [FieldError(_join(path, str(k)), unknown) for k in sorted(exc.extra_fields)]
    where = path or "body"
    if isinstance(exc, Invalid):
        return [FieldError(where, message) for message in exc.messages]
    if isinstance(exc, KeyError):
        return [FieldError(where, "required")]
    return [FieldError(where, "invalid value")]
