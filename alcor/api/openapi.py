"""An OpenAPI 3.1 description of the API, generated from the resource definitions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alcor import __version__
from alcor.api.attributes import NO_DEFAULT, REQUIRED, Attribute, Resource


def _schema(attr: Attribute) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": attr.kind}
    if attr.kind == "string":
        schema["type"] = ["string", "null"]
    if attr.description:
        schema["description"] = attr.description
    if attr.default not in (REQUIRED, NO_DEFAULT) and not callable(attr.default):
        schema["default"] = attr.default
    return schema


def _body(resource: Resource, key: str, *, mode: str) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, attr in resource.attributes.items():
        if mode == "create" and attr.allow_post:
            props[name] = _schema(attr)
            if attr.default is REQUIRED:
                required.append(name)
        elif (mode == "update" and attr.allow_put) or (mode == "read" and attr.is_visible):
            props[name] = _schema(attr)
    inner: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        inner["required"] = required
    if mode == "create":
        inner["additionalProperties"] = False
    return inner


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _operations(resource: Resource) -> dict[str, Any]:
    r, c, path = resource.name, resource.plural_key, resource.collection
    one = {"type": "object", "properties": {r: _ref(r)}, "required": [r]}
    many = {"type": "object", "properties": {c: {"type": "array", "items": _ref(r)}}}
    error = {"description": "NeutronError", **_json(_ref("NeutronError"))}
    params = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name, a in resource.attributes.items() if a.is_filter
    ] + [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
         for p in ("fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse")]
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    create_body = {"oneOf": [
        {"type": "object", "properties": {r: _ref(f"{r}_create")}, "required": [r]},
        {"type": "object", "properties": {c: {"type": "array", "items": _ref(f"{r}_create")}},
         "required": [c]},
    ]}
    update_body = {"type": "object", "properties": {r: _ref(f"{r}_update")}, "required": [r]}
    return {
        f"/v2.0/{path}": {
            "get": {"summary": f"List {c}", "parameters": params,
                    "responses": {"200": {"description": "OK", **_json(many)}, "400": error}},
            "post": {"summary": f"Create one {r} or many atomically",
                     "requestBody": {"required": True, **_json(create_body)},
                     "responses": {"201": {"description": "Created", **_json(one)},
                                   "400": error, "404": error, "409": error}},
        },
        f"/v2.0/{path}/{{id}}": {
            "parameters": id_param,
            "get": {"summary": f"Show a {r}",
                    "responses": {"200": {"description": "OK", **_json(one)}, "404": error}},
            "put": {"summary": f"Update a {r}",
                    "requestBody": {"required": True, **_json(update_body)},
                    "responses": {"200": {"description": "OK", **_json(one)}, "400": error,
                                  "404": error, "409": error, "412": error}},
            "delete": {"summary": f"Delete a {r}",
                       "responses": {"204": {"description": "Deleted"}, "404": error,
                                     "409": error, "412": error}},
        },
    }


def openapi_document(resources: Mapping[str, Resource]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "NeutronError": {
            "type": "object",
            "properties": {"NeutronError": {"type": "object", "properties": {
                "type": {"type": "string"}, "message": {"type": "string"},
                "detail": {"type": "string"}}}},
        }
    }
    for resource in resources.values():
        paths.update(_operations(resource))
        schemas[resource.name] = _body(resource, resource.name, mode="read")
        schemas[f"{resource.name}_create"] = _body(resource, resource.name, mode="create")
        schemas[f"{resource.name}_update"] = _body(resource, resource.name, mode="update")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Alcor Networking API (Neutron v2.0 compatible)",
                 "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
