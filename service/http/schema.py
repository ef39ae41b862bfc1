"""The API's one strict converter (JSON bodies, query strings) and its errors as field paths.

cattrs coerces by default (`"false"` becomes True, `1` becomes `"1"`): here every primitive
must already have its JSON type, unknown keys are refused, and every failure of a structuring
is collected (detailed validation) and turned into the problem's `errors` list, with paths of
the form `invitees[0].email`. Before any of that, every string (keys too) must be text Vyte can
take: valid Unicode and free of control characters (DESIGN §3.2).
"""

from __future__ import annotations

import re
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
#: fields whose text may hold line feeds and tabs (an invitation's message)
MULTILINE = frozenset({"message"})

# JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 encoder takes; Cc is
# U+0000-U+001F and U+007F-U+009F.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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


def _text_problem(text: str, multiline: bool) -> str | None:
    if _SURROGATE.search(text):
        return "must be valid Unicode (no lone surrogates)"
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(text):
        allowed = " other than line feed and tab" if multiline else ""
        return f"must not contain control characters{allowed}"
    return None


def _printable_name(name: str) -> str:
    # A field name is echoed in the answer: never the offending characters themselves.
    if _text_problem(name, False) is None:
        return name[:80]
    return ascii(name)[1:-1][:80]


def text_errors(data: Any) -> list[FieldError]:
    """Every string of `data` (a decoded JSON value or a query) that breaks the text rules,
    by field path; walked without recursion, as deep as JSON nests."""
    found: list[FieldError] = []
    pending: list[tuple[str, Any, bool]] = [("", data, False)]
    while pending:
        path, value, multiline = pending.pop()
        if isinstance(value, str):
            if problem := _text_problem(value, multiline):
                found.append(FieldError(path or "body", problem))
        elif isinstance(value, dict):
            for key, item in value.items():
                name = _join(path, _printable_name(str(key)))
                if problem := _text_problem(str(key), False):
                    found.append(FieldError(name, f"field name {problem}"))
                pending.append((name, item, key in MULTILINE))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item, multiline) for i, item in enumerate(value))
    return sorted(found, key=lambda e: e.field)


def structure(data: Any, cls: type[T], *, unknown: str = "unknown field") -> T:
    """`data` as a `cls`; ValidationFailed lists every bad field (`unknown` for extra keys).

    Text that breaks the rules of `text_errors` is refused whatever the field, along with
    every other field's errors; nothing is built from it."""
    bad_text = text_errors(data)
    try:
        value = converter.structure(data, cls)
    except Exception as exc:  # every failure of a structuring is the caller's input
        named = {e.field for e in bad_text}
        others = [e for e in field_errors(exc, unknown=unknown) if e.field not in named]
        raise ValidationFailed([*bad_text, *others]) from None
    if bad_text:
        raise ValidationFailed(bad_text)
    return value


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
        names = sorted(_printable_name(str(k)) for k in exc.extra_fields)
        return [FieldError(_join(path, name), unknown) for name in names]
    where = path or "body"
    if isinstance(exc, Invalid):
        return [FieldError(where, message) for message in exc.messages]
    if isinstance(exc, KeyError):
        return [FieldError(where, "required")]
    return [FieldError(where, "invalid value")]
