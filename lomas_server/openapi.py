"""The OpenAPI 3 description of the REST API, served at /lomas/api/v1/openapi.json.

Written by hand next to the handlers; a test checks that every route is described and that
the document is valid OpenAPI 3.
"""

from __future__ import annotations

from typing import Any

from lomas_server import __version__, limits
from lomas_server.limits import MAX_QUERY_LENGTH

# Privacy parameters: the ranges the server enforces (limits.py).
_EPSILON = {
    "type": "number",
    "minimum": limits.MIN_EPSILON,
    "maximum": limits.MAX_QUERY_EPSILON,
}
_DELTA = {
    "type": "number",
    "minimum": 0,
    "maximum": limits.MAX_DELTA,
    "default": 0,
    "description": f"0, or from {limits.MIN_DELTA:g} to {limits.MAX_DELTA:g}",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Invalid request or query (nothing spent)",
        401: "Missing or invalid API token",
        403: "Not enough budget, or not allowed (nothing spent)",
        404: "No such dataset for this user",
        413: "Request body too large",
        429: "Too many of this analyst's requests running at once (nothing spent)",
        500: "The query failed after its budget was reserved (the spend stays)",
        503: "The admin store or dataset is unavailable, the engine is busy (nothing spent), "
        "or the query passed its time limit (a release's spend stays; see the message)",
    }
    return {str(status): _json(_ref("Error"), texts[status]) for status in statuses}


_NAME_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Dataset name",
    "schema": {"type": "string"},
}

_PRIVACY = {
    "type": "object",
    "properties": {"epsilon": {"type": "number"}, "delta": {"type": "number"}},
    "required": ["epsilon", "delta"],
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "Stable machine-readable code"},
            "message": {"type": "string", "description": "What went wrong, for people"},
        },
        "required": ["error", "message"],
    },
    "Privacy": _PRIVACY,
    "Budget": {
        "type": "object",
        "properties": {
            "initial": _ref("Privacy"),
            "spent": _ref("Privacy"),
            "remaining": _ref("Privacy"),
            "last_query": {
                "type": ["object", "null"],
                "description": "GET /budget only: the analyst's last paid query on the dataset, "
                "and how many more like it fit the grant (and the dataset-wide cap), counted "
                "exactly as reservations count",
                "properties": {
                    "query_id": {"type": "string"},
                    "cost": _ref("Privacy"),
                    "queries_left": {"type": "integer", "minimum": 0},
                },
            },
        },
        "required": ["initial", "spent", "remaining"],
    },
    "Table": {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array", "items": {}}},
        },
        "required": ["columns", "data"],
    },
    "Dataset": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "engines": {"type": "array", "items": {"type": "string"}},
            "budget": _ref("Budget"),
            "max_query": _ref("Privacy"),
        },
    },
    "SqlCostRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "query": {
                "type": "string",
                "maxLength": MAX_QUERY_LENGTH,
                "description": "One SELECT on table df (or the dataset's name)",
            },
            "epsilon": _EPSILON,
            "delta": _DELTA,
        },
        "required": ["query", "epsilon"],
    },
    "SqlRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "query": {"type": "string", "maxLength": MAX_QUERY_LENGTH},
            "epsilon": _EPSILON,
            "delta": _DELTA,
            "postprocess": {"type": "boolean", "default": True},
            "fresh": {
                "type": "boolean",
                "default": False,
                "description": "Pay for a new release even if an identical one was made before",
            },
        },
        "required": ["query", "epsilon"],
    },
    "SqlCostResponse": {
        "type": "object",
        "properties": {
            "cost": _ref("Privacy"),
            "budget": _ref("Budget"),
            "fits": {"type": "boolean"},
            "queries_left": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "How many queries like this one fit what is left (null: free)",
            },
            "normalized_query": {"type": "string"},
            "replay_of": {
                "type": ["string", "null"],
                "description": "An earlier identical release that running this would return for free",
            },
            "accuracy": {
                "type": "object",
                "properties": {
                    "confidence": {"type": "number"},
                    "columns": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "column": {"type": "string"},
                                "noisy_values": {"type": "array", "items": {"type": "string"}},
                                "half_width": {"type": ["number", "null"]},
                            },
                        },
                    },
                    "noisy_values": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "epsilon": {"type": "number"},
                                "delta": {"type": "number"},
                                "scale": {"type": ["number", "null"]},
                                "half_width": {"type": ["number", "null"]},
                            },
                        },
                    },
                },
            },
        },
    },
    "SqlResponse": {
        "type": "object",
        "properties": {
            "query_id": {"type": "string"},
            "replay_of": {
                "type": ["string", "null"],
                "description": "Set when this is the archived result of an identical request (cost 0)",
            },
            "result": _ref("Table"),
            "cost": _ref("Privacy"),
            "budget": _ref("Budget"),
            "accuracy": {
                "type": "object",
                "description": "For each released column, the noise behind it and, where defined, "
                "the half-width of the interval holding the true value with 'confidence'",
            },
        },
        "required": ["query_id", "result", "cost", "budget"],
    },
    "OpenDPQuery": {
        "type": "object",
        "additionalProperties": False,
        "description": "Compiled by the server from the dataset's metadata; never code",
        "properties": {
            "filters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "column": {"type": "string"},
                        "op": {
                            "type": "string",
                            "enum": [
                                "==",
                                "!=",
                                "<",
                                "<=",
                                ">",
                                ">=",
                                "in",
                                "is_null",
                                "is_not_null",
                            ],
                        },
                        "value": {},
                    },
                    "required": ["column", "op"],
                },
            },
            "group_by": {"type": "array", "items": {"type": "string"}},
            "aggregates": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "op": {
                            "type": "string",
                            "enum": [
                                "count",
                                "sum",
                                "mean",
                                "variance",
                                "quantile",
                                "median",
                                "histogram",
                            ],
                        },
                        "column": {"type": "string"},
                        "as": {"type": "string"},
                        "q": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    },
                    "required": ["op"],
                },
            },
        },
        "required": ["aggregates"],
    },
    "OpenDPRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "query": _ref("OpenDPQuery"),
            "mechanism": {"type": "string", "enum": ["laplace", "gaussian"], "default": "laplace"},
            "epsilon": {**_EPSILON, "description": "Laplace budget"},
            "rho": {
                "type": "number",
                "minimum": limits.MIN_RHO,
                "maximum": limits.MAX_RHO,
                "description": "Gaussian budget (zCDP)",
            },
            "accuracy": {
                "type": "object",
                "additionalProperties": False,
                "description": "Instead of a budget: the cheapest one meeting this accuracy",
                "properties": {
                    "half_width": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": limits.MAX_HALF_WIDTH,
                    },
                    "confidence": {
                        "type": "number",
                        "minimum": limits.MIN_CONFIDENCE,
                        "maximum": limits.MAX_CONFIDENCE,
                        "default": 0.95,
                    },
                },
                "required": ["half_width"],
            },
            "delta": {**_DELTA, "description": "Needed to group by non-public keys"},
            "fresh": {"type": "boolean", "default": False},
        },
        "required": ["query"],
    },
    "DummyRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rows": {"type": "integer", "minimum": 0, "default": 100},
            "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        },
    },
    "DummyResponse": {
        "allOf": [
            _ref("Table"),
            {
                "type": "object",
                "properties": {
                    "types": {"type": "object", "additionalProperties": {"type": "string"}},
                    "seed": {"type": "integer"},
                },
            },
        ]
    },
    "ArchiveEntry": {
        "type": "object",
        "properties": {
            "query_id": {"type": "string"},
            "dataset": {"type": "string"},
            "engine": {"type": "string"},
            "query": {"type": "string"},
            "normalized_query": {"type": "string"},
            "epsilon": {"type": "number"},
            "delta": {"type": "number"},
            "postprocess": {"type": "boolean"},
            "cost": _ref("Privacy"),
            "status": {"type": "string", "enum": ["running", "done", "failed", "interrupted"]},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "result": {"anyOf": [_ref("Table"), {"type": "null"}]},
        },
    },
}


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _post_json(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def openapi_document(server_url: str = "/lomas/api/v1") -> dict[str, Any]:
    dataset_params = {"parameters": [_NAME_PARAM]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lomas-jupyter DP API",
            "version": __version__,
            "description": (
                "Differentially private queries on datasets that stay with their owner. "
                "Every endpoint but /health and /openapi.json needs 'Authorization: token <T>'."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"LomasToken": []}],
        "components": {
            "securitySchemes": {
                "LomasToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <T>' or 'Bearer <T>' with the user's API token",
                }
            },
            "schemas": _SCHEMAS,
        },
        "paths": {
            "/health": {
                "get": _operation(
                    "Service status and version",
                    {
                        "200": _json({"type": "object"}, "Healthy"),
                        "503": _json({"type": "object"}, "Admin store unreachable"),
                    },
                    security=[],
                )
            },
            "/openapi.json": {
                "get": _operation(
                    "This document", {"200": _json({"type": "object"}, "OpenAPI 3")}, security=[]
                )
            },
            "/datasets": {
                "get": _operation(
                    "Datasets this user may query, with budgets",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "datasets": {"type": "array", "items": _ref("Dataset")}
                                },
                            },
                            "The user's datasets",
                        ),
                        **_errors(401, 503),
                    },
                )
            },
            "/datasets/{name}/metadata": {
                **dataset_params,
                "get": _operation(
                    "Public metadata: columns, types, bounds, categories",
                    {
                        "200": _json({"type": "object"}, "Metadata document"),
                        **_errors(401, 404, 503),
                    },
                ),
            },
            "/datasets/{name}/budget": {
                **dataset_params,
                "get": _operation(
                    "Initial, spent and remaining budget",
                    {"200": _json(_ref("Budget"), "Budget"), **_errors(401, 404, 503)},
                ),
            },
            "/datasets/{name}/dummy": {
                **dataset_params,
                "post": _operation(
                    "Synthetic rows from metadata only (no budget spent)",
                    {
                        "200": _json(_ref("DummyResponse"), "Dummy rows"),
                        **_errors(400, 401, 404, 413, 429, 503),
                    },
                    requestBody=_post_json("DummyRequest"),
                ),
            },
            "/datasets/{name}/smartnoise-sql/cost": {
                **dataset_params,
                "post": _operation(
                    "Exact cost of a SmartNoise-SQL query (no budget spent, no data touched)",
                    {
                        "200": _json(_ref("SqlCostResponse"), "Cost"),
                        **_errors(400, 401, 403, 404, 413, 429, 503),
                    },
                    requestBody=_post_json("SqlCostRequest"),
                ),
            },
            "/datasets/{name}/smartnoise-sql": {
                **dataset_params,
                "post": _operation(
                    "Run a SmartNoise-SQL query; the cost is reserved before data is read",
                    {
                        "200": _json(_ref("SqlResponse"), "Noisy result"),
                        **_errors(400, 401, 403, 404, 413, 429, 500, 503),
                    },
                    requestBody=_post_json("SqlRequest"),
                ),
            },
            "/datasets/{name}/opendp/cost": {
                **dataset_params,
                "post": _operation(
                    "Exact cost and accuracy of an OpenDP query (no budget spent, no data touched)",
                    {
                        "200": _json({"type": "object"}, "Cost and accuracy"),
                        **_errors(400, 401, 403, 404, 413, 429, 503),
                    },
                    requestBody=_post_json("OpenDPRequest"),
                ),
            },
            "/datasets/{name}/opendp": {
                **dataset_params,
                "post": _operation(
                    "Run an OpenDP query built by the server from metadata; cost reserved first",
                    {
                        "200": _json(_ref("SqlResponse"), "Noisy result"),
                        **_errors(400, 401, 403, 404, 413, 429, 500, 503),
                    },
                    requestBody=_post_json("OpenDPRequest"),
                ),
            },
            "/queries": {
                "get": _operation(
                    "This user's query archive",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "queries": {"type": "array", "items": _ref("ArchiveEntry")}
                                },
                            },
                            "Archive",
                        ),
                        **_errors(401, 404, 503),
                    },
                    parameters=[
                        {
                            "name": "dataset",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Only queries on this dataset",
                        }
                    ],
                )
            },
        },
    }
