"""A value that fits a JSON schema: the loopback server's structured outputs and tool arguments.

Libraries validate what comes back (``parse``, instructor, pydantic-ai output
tools, langchain's structured output), so an answer must fit the schema they
sent, including what pydantic emits: ``$ref``/``$defs``, ``anyOf`` with
``null`` for optional fields, ``const`` for literals, ``format`` for dates,
URLs and UUIDs. The value is deterministic: every free string is ``echo``
(the request's last message), so a test can tell the answer came from its
request; the first enum member, the first non-null ``anyOf``/``oneOf``
branch, one array item, numbers as close to 0 as the bounds allow. Not
handled: ``pattern``, ``uniqueItems`` with ``minItems`` > 1, ``not``.
"""

from __future__ import annotations

from typing import Any

FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "PT1S",
    "email": "loopback@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "localhost",
    "byte": "AA==",
}
"""Strings of a ``format`` a validator checks (pydantic does for all of these)."""

DEEP = 6
"""Past this nesting, optional parts are left out so recursive schemas end."""


def example(schema: Any, echo: str, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value valid against ``schema`` (``root`` holds the ``$defs`` its ``$ref``s point into)."""
    if not isinstance(schema, dict):
        return echo  # true / absent: anything goes
    root = root if root is not None else schema
    deep = depth > DEEP
    if "$ref" in schema:
        return example(_resolve(root, schema["$ref"]), echo, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("allOf"):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged = _merge(merged, _resolve(root, part["$ref"]) if "$ref" in part else part)
        return example(merged, echo, root, depth)
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            branches = schema[key]
            nulls = [b for b in branches if b.get("type") == "null"]
            others = [b for b in branches if b.get("type") != "null"]
            return example((nulls if deep and nulls else others or nulls)[0], echo, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        if deep and "null" in kind or kind == ["null"]:
            return None
        kind = next(k for k in kind if k != "null")
    if schema.get("nullable") and deep:
        return None
    if kind is None:
        kind = (
            "object"
            if "properties" in schema
            else "array"
            if "items" in schema or "prefixItems" in schema
            else "string"
        )
    return _BUILDERS.get(kind, _string)(schema, echo, root, depth)


def _object(schema: dict[str, Any], echo: str, root: dict[str, Any], depth: int) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties") or {}
    if props:
        required = set(schema.get("required") or [])
        keys = [k for k in props if k in required] if depth > DEEP else list(props)
        return {k: example(props[k], echo, root, depth + 1) for k in keys}
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return {}
    return {"text": example(extra, echo, root, depth + 1) if isinstance(extra, dict) and extra else echo}


def _array(schema: dict[str, Any], echo: str, root: dict[str, Any], depth: int) -> list[Any]:
    if schema.get("prefixItems"):
        return [example(s, echo, root, depth + 1) for s in schema["prefixItems"]]
    least = schema.get("minItems", 0)
    count = least if depth > DEEP else max(1, least)
    count = min(count, schema.get("maxItems", count))
    return [example(schema.get("items", {}), echo, root, depth + 1) for _ in range(count)]


def _string(schema: dict[str, Any], echo: str, root: dict[str, Any], depth: int) -> str:
    text = FORMATS.get(schema.get("format", ""), echo)
    if "maxLength" in schema:
        text = text[: schema["maxLength"]]
    return text.ljust(schema.get("minLength", 0), "x")


def _number(schema: dict[str, Any], echo: str, root: dict[str, Any], depth: int) -> float:
    integer = schema.get("type") == "integer" or "integer" in (schema.get("type") or [])
    step = 1 if integer else 0.5
    low = _bound(schema, "minimum", "exclusiveMinimum", step)
    high = _bound(schema, "maximum", "exclusiveMaximum", -step)
    value = max(low, 0) if low is not None else 0
    if high is not None and value > high:
        value = high if low is None or high >= low else (low + high) / 2
    multiple = schema.get("multipleOf")
    if multiple:
        value = -(-value // multiple) * multiple
    return int(value) if integer else float(value)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, step: float) -> float | None:
    if isinstance(schema.get(inclusive), (int, float)):
        value = schema[inclusive]
        return value + step if schema.get(exclusive) is True else value  # draft 4's boolean exclusive
    if isinstance(schema.get(exclusive), (int, float)) and not isinstance(schema[exclusive], bool):
        return schema[exclusive] + step
    return None


def _resolve(root: dict[str, Any], ref: str) -> Any:
    """A local ``#/...`` JSON pointer (``#/$defs/Name``, ``#/definitions/Name``, ``#``)."""
    node: Any = root
    for step in ref.removeprefix("#").strip("/").split("/"):
        if step:
            node = node[step.replace("~1", "/").replace("~0", "~")]
    return node


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    merged = {**a, **b}
    if "properties" in a or "properties" in b:
        merged["properties"] = {**a.get("properties", {}), **b.get("properties", {})}
        merged["required"] = [*a.get("required", []), *b.get("required", [])]
    return merged


_BUILDERS: dict[str, Any] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": lambda *_: True,
    "null": lambda *_: None,
}
