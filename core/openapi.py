"""The error shape in the OpenAPI schema, so clients (and schema-driven tests) know every
error answer: one `Error` component, referenced by each status an operation can return."""

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "message": {"type": "string"},
        "extra": {"type": "object"},
    },
    "required": ["code", "message", "extra"],
    "additionalProperties": False,
}

ERROR_DESCRIPTIONS = {
    "400": "Bad input (INVALID_INPUT, MALFORMED_REQUEST, JSON_TOO_DEEP, TEXT_NOT_STORABLE or a "
    "domain code naming the field).",
    "401": "No or bad credentials (NOT_AUTHENTICATED, AUTHENTICATION_FAILED).",
    "403": "Not permitted (PERMISSION_DENIED).",
    "404": "Not found, or another user's object (…_NOT_FOUND).",
    "409": "The state forbids it (PROPOSAL_STATE_CONFLICT, PROPOSAL_EXPIRED, PREFLIGHT_REFUSED).",
    "413": "The body is over DATA_UPLOAD_MAX_MEMORY_SIZE (REQUEST_TOO_LARGE).",
    "415": "Unsupported body type (UNSUPPORTED_MEDIA_TYPE).",
    "503": "The execute queue is unreachable (BROKER_UNAVAILABLE): nothing was claimed.",
}


def _error_statuses(path: str, method: str, operation: dict) -> list[str]:
    statuses = ["401", "403"]
    writes = method in ("post", "put", "patch")
    if writes or any(p.get("in") == "query" for p in operation.get("parameters", [])):
        statuses.append("400")
    if "{" in path:
        statuses.append("404")
    if writes:
        statuses += ["409", "413", "415"]
    if path.endswith("/execute/"):
        statuses.append("503")
    return statuses


def error_responses_hook(result, generator, request, public):
    """drf-spectacular postprocessing hook: documents the error answers of every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(path, method, operation):
                responses.setdefault(
                    status, {"description": ERROR_DESCRIPTIONS[status], "content": reference}
                )
    return result
