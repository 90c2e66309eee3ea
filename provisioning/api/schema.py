"""A tiny schema library: one declaration validates request data and renders JSON Schema.

Why not a framework: the API needs a dozen shapes, explicit error paths ("ring_group[2]") and
the very same schema in the OpenAPI document. Each class below does exactly two things:
`validate(value, path)` returns the (normalised) value or raises `SchemaError` naming the
field, and `json_schema()` returns the JSON Schema (2020-12, as OpenAPI 3.1 uses) of what
`validate` accepts. Keeping both in one class is what keeps the document honest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AnyObject",
    "Array",
    "Boolean",
    "ByMedia",
    "Date",
    "Deprecated",
    "Enum",
    "Integer",
    "Nullable",
    "Number",
    "Object",
    "Ref",
    "Schema",
    "SchemaError",
    "String",
    "utf8_encodable",
]


class SchemaError(ValueError):
    """`field` is a dotted path ("after_hours.slots.weekday[3]"), empty for the whole value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field or 'body'}: {reason}")
        self.field = field
        self.reason = reason


# JSON's "\ud800" escape decodes to a lone surrogate: a Python str, but no Unicode text; the
# database drivers cannot encode it (UnicodeEncodeError). Every string the API accepts is
# checked here, once, so no route can let one through (RFC 8259 §8.2: such strings are not
# interoperable).
NOT_UNICODE = "must be valid Unicode text (no unpaired surrogate code points)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_encodable(text: str) -> bool:
    """False when `text` holds a lone surrogate (it would not encode as UTF-8)."""
    return text.isascii() or _SURROGATE.search(text) is None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Schema:
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def _doc(self, d: dict[str, Any]) -> dict[str, Any]:
        if self.description:
            d["description"] = self.description
        return d


@dataclass(slots=True)
class String(Schema):
    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None  # full match
    format: str | None = None  # documentation only
    convert: Callable[[str], Any] | None = None  # e.g. normalize_number; ValueError -> error
    description: str | None = None
    any_text: bool = False  # NUL allowed: for answers that echo what a client sent

    def __post_init__(self) -> None:
        if self.any_text and self.pattern is not None:
            raise ValueError("any_text and pattern exclude each other")

    def validate(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, str):
            raise SchemaError(path, "must be a string")
        if len(value) < self.min_length:
            raise SchemaError(path, f"must be at least {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            raise SchemaError(path, f"must be at most {self.max_length} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise SchemaError(path, f"must match {self.pattern}")
        if "\x00" in value and not self.any_text:
            raise SchemaError(path, "must not contain NUL characters")
        if not utf8_encodable(value):
            raise SchemaError(path, NOT_UNICODE)
        if self.convert is not None:
            try:
                return self.convert(value)
            except ValueError as exc:
                raise SchemaError(path, str(exc)) from None
        return value

    def json_schema(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "string"}
        if self.min_length:
            d["minLength"] = self.min_length
        if self.max_length is not None:
            d["maxLength"] = self.max_length
        if self.pattern is not None:
            d["pattern"] = f"^(?:{self.pattern})$"
        elif not self.any_text:
            d["pattern"] = "^[^\\u0000]*$"  # NUL is refused (PostgreSQL text cannot hold it)
        if self.format is not None:
            d["format"] = self.format
        return self._doc(d)


def _date(text: str) -> Any:
    from datetime import date

    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError("must be a date YYYY-MM-DD")
    return date.fromisoformat(text)


def Date(description: str | None = None) -> String:
    return String(
        pattern=r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
        format="date",
        convert=_date,
        description=description,
    )


@dataclass(slots=True)
class Integer(Schema):
    minimum: int | None = None
    maximum: int | None = None
    multiple_of: int | None = None
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema: 30.0 is an integer
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(path, "must be an integer")
        if self.minimum is not None and value < self.minimum:
            raise SchemaError(path, f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise SchemaError(path, f"must be <= {self.maximum}")
        if self.multiple_of is not None and value % self.multiple_of:
            raise SchemaError(path, f"must be a multiple of {self.multiple_of}")
        return value

    def json_schema(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            d["minimum"] = self.minimum
        if self.maximum is not None:
            d["maximum"] = self.maximum
        if self.multiple_of is not None:
            d["multipleOf"] = self.multiple_of
        return self._doc(d)


@dataclass(slots=True)
class Number(Schema):
    minimum: float | None = None
    maximum: float | None = None
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(path, "must be a number")
        if value != value or value in (float("inf"), float("-inf")):
            raise SchemaError(path, "must be finite")
        if self.minimum is not None and value < self.minimum:
            raise SchemaError(path, f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise SchemaError(path, f"must be <= {self.maximum}")
        return float(value)

    def json_schema(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            d["minimum"] = _plain_number(self.minimum)
        if self.maximum is not None:
            d["maximum"] = _plain_number(self.maximum)
        return self._doc(d)


def _plain_number(value: float) -> float | int:
    """30.0 -> 30 in the document (the same JSON Schema number, written as people write it)."""
    return int(value) if float(value).is_integer() else value


@dataclass(slots=True)
class Boolean(Schema):
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, bool):
            raise SchemaError(path, "must be true or false")
        return value

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"type": "boolean"})


@dataclass(slots=True)
class Enum(Schema):
    values: Sequence[Any]
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        # bool is an int: `True in (1, 2)` must not pass for an integer enum
        if isinstance(value, bool) or value not in self.values:
            raise SchemaError(path, f"must be one of {list(self.values)}")
        return value

    def json_schema(self) -> dict[str, Any]:
        values = list(self.values)
        types = sorted({"integer" if isinstance(v, int) else "string" for v in values})
        d: dict[str, Any] = {"type": types[0] if len(types) == 1 else types, "enum": values}
        return self._doc(d)


@dataclass(slots=True)
class Nullable(Schema):
    inner: Schema
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        return None if value is None else self.inner.validate(value, path)

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"anyOf": [self.inner.json_schema(), {"type": "null"}]})


@dataclass(slots=True)
class Array(Schema):
    items: Schema
    min_items: int = 0
    max_items: int | None = None
    unique: bool = False
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, list):
            raise SchemaError(path, "must be an array")
        if len(value) < self.min_items:
            raise SchemaError(path, f"must have at least {self.min_items} items")
        if self.max_items is not None and len(value) > self.max_items:
            raise SchemaError(path, f"must have at most {self.max_items} items")
        out = [self.items.validate(v, _join(path, i)) for i, v in enumerate(value)]
        if self.unique:
            seen: list[Any] = []
            for i, v in enumerate(out):
                if v in seen:
                    raise SchemaError(_join(path, i), "duplicate item")
                seen.append(v)
        return out

    def json_schema(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "array", "items": self.items.json_schema()}
        if self.min_items:
            d["minItems"] = self.min_items
        if self.max_items is not None:
            d["maxItems"] = self.max_items
        if self.unique:
            d["uniqueItems"] = True
        return self._doc(d)


@dataclass(slots=True)
class Deprecated(Schema):
    """A field kept for existing clients under its old name (`alias_of` is the name to use):
    documented `deprecated: true`, validated like the field it stands for."""

    inner: Schema
    alias_of: str
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        return self.inner.validate(value, path)

    def json_schema(self) -> dict[str, Any]:
        d = dict(self.inner.json_schema())
        d["deprecated"] = True
        d["description"] = f"deprecated: the old name of {self.alias_of} (same value)"
        return d


@dataclass(slots=True)
class Object(Schema):
    """`required` names the fields that must be present; unknown fields are an error (a typo
    must not be silently ignored). `min_properties=1` makes an empty PATCH an error.
    `aliases` maps a deprecated old name to its field: either name is accepted (not both),
    errors name the key as sent, and the validated value uses the field's name."""

    fields: Mapping[str, Schema]
    required: Sequence[str] = ()
    min_properties: int = 0
    description: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # more JSON Schema keywords
    aliases: Mapping[str, str] = field(default_factory=dict)  # old name -> field name

    def validate(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, dict):
            raise SchemaError(path, "must be an object")
        for key in value:
            if key not in self.fields and key not in self.aliases:
                raise SchemaError(_join(path, key), "unknown field")
        for alias, name in self.aliases.items():
            if alias in value and name in value:
                raise SchemaError(_join(path, alias), f"is the old name of {name}: give one")
        given = {self.aliases.get(k, k) for k in value}
        for key in self.required:
            if key not in given:
                raise SchemaError(_join(path, key), "is required")
        if len(value) < self.min_properties:
            raise SchemaError(path, f"must have at least {self.min_properties} field(s)")
        return {
            self.aliases.get(k, k): self.fields[self.aliases.get(k, k)].validate(v, _join(path, k))
            for k, v in value.items()
        }

    def json_schema(self) -> dict[str, Any]:
        properties = {k: s.json_schema() for k, s in self.fields.items()}
        for alias, name in self.aliases.items():
            properties[alias] = Deprecated(self.fields[name], name).json_schema()
        d: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        aliased = set(self.aliases.values())
        required = [k for k in self.required if k not in aliased]
        if required:
            d["required"] = required
        alternatives = [_one_of_names(name, self.aliases) for name in self.required]
        d.update({"allOf": [a for a in alternatives if a]} if any(alternatives) else {})
        if self.min_properties:
            d["minProperties"] = self.min_properties
        d.update(self.extra)
        return self._doc(d)


def _one_of_names(name: str, aliases: Mapping[str, str]) -> dict[str, Any] | None:
    """A required field that also has an old name: exactly one of the names is present."""
    names = [name, *(a for a, n in aliases.items() if n == name)]
    if len(names) == 1:
        return None
    return {"oneOf": [{"required": [n]} for n in names]}


@dataclass(slots=True)
class AnyObject(Schema):
    """Any JSON object (error details): documented, never used to validate input."""

    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, dict):
            raise SchemaError(path, "must be an object")
        return value

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"type": "object"})


@dataclass(slots=True)
class Ref(Schema):
    """A named schema: rendered as `$ref` into components.schemas, collected by openapi.py."""

    name: str
    inner: Schema
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        return self.inner.validate(value, path)

    def json_schema(self) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{self.name}"}


@dataclass(slots=True)
class ByMedia(Schema):
    """A response whose schema depends on its media type (a history as JSON or as CSV):
    openapi.py documents each media type with its own schema. Responses only."""

    media: Mapping[str, Schema]
    description: str | None = None

    def validate(self, value: Any, path: str = "") -> Any:
        raise SchemaError(path, "a response schema validates nothing")

    def json_schema(self) -> dict[str, Any]:
        return self._doc({"anyOf": [s.json_schema() for s in self.media.values()]})


def collect_refs(schema: Schema, into: dict[str, Schema]) -> None:
    """Every Ref reachable from `schema`, by name (for components.schemas)."""
    if isinstance(schema, Ref):
        if schema.name in into:
            return
        into[schema.name] = schema.inner
        collect_refs(schema.inner, into)
    elif isinstance(schema, Nullable | Deprecated):
        collect_refs(schema.inner, into)
    elif isinstance(schema, ByMedia):
        for s in schema.media.values():
            collect_refs(s, into)
    elif isinstance(schema, Array):
        collect_refs(schema.items, into)
    elif isinstance(schema, Object):
        for s in schema.fields.values():
            collect_refs(s, into)
