"""Tool schemas cut from the OpenAPI document, so a tool and its operation cannot drift.

The API's schema (drf-spectacular, /api/schema) already says what the validators
accept; a tool's input schema is its operation's parameters and/or request body and
its output schema the operation's success response, converted from OpenAPI 3.0 to
JSON Schema 2020-12 (the dialect MCP tool schemas use): `nullable: true` becomes a
`"null"` type, and `#/components/schemas/X` references become `#/$defs/X` with the
components they reach copied along. Generated once per process (about 0.2 s).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drf_spectacular.generators import SchemaGenerator

COMPONENTS = "#/components/schemas/"
DEFS = "#/$defs/"
COMBINATORS = ("allOf", "anyOf", "oneOf", "$ref")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document /api/schema serves (same generator, same settings)."""
    return dict(SchemaGenerator().get_schema(request=None, public=True))


def operation(operation_id: str) -> dict[str, Any]:
    for methods in openapi_document()["paths"].values():
        for op in methods.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return dict(op)
    raise KeyError(f"No operation {operation_id!r} in the OpenAPI document.")


def parameter(operation_id: str, name: str) -> dict[str, Any]:
    """A path or query parameter's schema, with the parameter's description."""
    for param in operation(operation_id).get("parameters", []):
        if param["name"] == name and param["in"] in ("path", "query"):
            schema = copy.deepcopy(param["schema"])
            if param.get("description"):
                schema["description"] = param["description"]
            return dict(schema)
    raise KeyError(f"No parameter {name!r} in operation {operation_id!r}.")


def _component(ref: str) -> dict[str, Any]:
    return dict(openapi_document()["components"]["schemas"][ref.removeprefix(COMPONENTS)])


def request_body(operation_id: str) -> dict[str, Any]:
    """The operation's JSON request body schema (a component, resolved one level)."""
    schema = operation(operation_id)["requestBody"]["content"]["application/json"]["schema"]
    return _component(schema["$ref"]) if "$ref" in schema else dict(schema)


def response_body(operation_id: str) -> dict[str, Any]:
    """The operation's success (2xx) JSON response schema, resolved one level."""
    responses = operation(operation_id)["responses"]
    status = min(code for code in responses if code.startswith("2"))
    schema = responses[status]["content"]["application/json"]["schema"]
    return _component(schema["$ref"]) if "$ref" in schema else dict(schema)


def json_schema(openapi_schema: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0 schema as a self-contained JSON Schema 2020-12 document."""
    wanted: set[str] = set()
    root = _convert(openapi_schema, wanted)
    defs: dict[str, Any] = {}
    while missing := sorted(wanted - defs.keys()):
        for name in missing:
            defs[name] = _convert(_component(name), wanted)
    if defs:
        root["$defs"] = dict(sorted(defs.items()))
    return root


def _convert(node: Any, wanted: set[str]) -> Any:
    if isinstance(node, list):
        return [_convert(item, wanted) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable":
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(COMPONENTS):
            wanted.add(value.removeprefix(COMPONENTS))
            out[key] = DEFS + value.removeprefix(COMPONENTS)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _convert(prop, wanted) for name, prop in value.items()}
        else:
            out[key] = _convert(value, wanted)
    if node.get("nullable") is True:
        return _nullable(out)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("type"), str) and not any(k in schema for k in COMBINATORS):
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    description = schema.pop("description", None)
    wrapped: dict[str, Any] = {"anyOf": [schema, {"type": "null"}]}
    if description is not None:
        wrapped["description"] = description
    return wrapped


@dataclass(frozen=True)
class Params:
    """Path/query parameters of an operation as tool arguments (`rename`: argument
    name -> parameter name, for a parameter borrowed under another name)."""

    operation_id: str
    names: tuple[str, ...]
    required: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)

    def properties(self) -> Iterable[tuple[str, dict[str, Any]]]:
        for name in self.names:
            yield name, parameter(self.operation_id, self.rename.get(name, name))


@dataclass(frozen=True)
class Body:
    """An operation's request body as tool arguments (`only`: just these fields)."""

    operation_id: str
    only: tuple[str, ...] | None = None


def input_schema(parts: Iterable[Params | Body]) -> dict[str, Any]:
    """A tool's input schema: an object merging its operations' parameters and body."""
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    required: list[str] = []
    for part in parts:
        if isinstance(part, Params):
            schema["properties"].update(part.properties())
            required.extend(part.required)
            continue
        body = request_body(part.operation_id)
        properties = body.get("properties", {})
        if part.only is not None:
            properties = {name: properties[name] for name in part.only}
        schema["properties"].update(properties)
        required.extend(n for n in body.get("required", []) if n in properties)
    if required:
        schema["required"] = sorted(set(required))
    return json_schema(schema)


def output_schema(operation_id: str) -> dict[str, Any]:
    return json_schema(response_body(operation_id))
