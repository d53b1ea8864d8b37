"""What the OpenAPI document says beyond what Litestar infers: problems, strict bodies."""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

__all__ = ("describe_problems",)

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Every error any route can answer with, as RFC 9457 documents.
_PROBLEMS = {
    "400": "The request is malformed: a body, parameter or header is invalid.",
    "401": "No credentials, or credentials that do not verify.",
    "402": "The tenant's tier allows no more of something; `where` names it.",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object for this tenant.",
    "409": "The object changed concurrently, or the command contradicts it.",
    "412": "If-Match names a revision that is no longer current.",
    "413": "The request body is over the size limit.",
    "422": "The content breaks a rule; flow errors list each with line and field.",
    "428": "An update needs If-Match with the ETag of the revision edited.",
    "500": "The server failed; the error is logged.",
    "503": "A dependency (NATS, Postgres, a read model, the JWKS) is unavailable.",
    "504": "The event store did not answer in time; retrying is safe.",
}

# Request bodies whose Structs forbid unknown fields.
_STRICT_BODIES = ("FlowInput", "ApiKeyInput")


def describe_problems(openapi: OpenAPI) -> None:
    """Declare problem responses on every operation, and strict request bodies."""
    components = openapi.components
    schemas = components.schemas if components.schemas is not None else {}
    schemas["Problem"] = Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "detail"],
        properties={
            "type": Schema(type=OpenAPIType.STRING),
            "title": Schema(type=OpenAPIType.STRING),
            "status": Schema(type=OpenAPIType.INTEGER),
            "detail": Schema(type=OpenAPIType.STRING),
            "instance": Schema(type=OpenAPIType.STRING),
        },
        description="An RFC 9457 problem document; extensions add expected, got, "
        "where, errors and warnings where known.",
    )
    for name in _STRICT_BODIES:
        if name in schemas and isinstance(schemas[name], Schema):
            schemas[name].additional_properties = False
    components.schemas = schemas

    problem = {
        PROBLEM_MEDIA_TYPE: OpenAPIMediaType(
            schema=Reference("#/components/schemas/Problem")
        )
    }
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for status, description in _PROBLEMS.items():
                responses[status] = OpenAPIResponse(
                    description=description, content=dict(problem)
                )
            operation.responses = responses
