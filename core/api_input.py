"""What the API refuses before a view sees it, each with the one error shape and a stable code:
a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413 REQUEST_TOO_LARGE), JSON nested deeper than
MAX_JSON_DEPTH (400 JSON_TOO_DEEP), and text PostgreSQL cannot store (400 TEXT_NOT_STORABLE)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import JsonResponse
from rest_framework import parsers

from core.errors import DomainError
from core.text import text_storable_check

# Far more than any of our inputs needs (two levels), far less than Python's recursion limit.
MAX_JSON_DEPTH = 32


class JsonTooDeep(DomainError):
    code = "JSON_TOO_DEEP"


def json_depth_check(data: Any) -> None:
    """Raises JsonTooDeep when lists and objects nest deeper than MAX_JSON_DEPTH. Iterative,
    so the check itself cannot overflow the stack."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonTooDeep(
                    f"The JSON nests deeper than {MAX_JSON_DEPTH} levels.",
                    extra={"max_depth": MAX_JSON_DEPTH},
                )
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)


def _checked(data: Any) -> Any:
    json_depth_check(data)
    text_storable_check(data)
    return data


def _form_fields(data) -> dict:
    """A QueryDict as the fields a view reads: one value, or the list of a repeated field."""
    return {key: values[0] if len(values) == 1 else values for key, values in data.lists()}


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The C decoder gives up on deep nesting before our own check could run.
            raise JsonTooDeep(
                f"The JSON nests deeper than {MAX_JSON_DEPTH} levels.",
                extra={"max_depth": MAX_JSON_DEPTH},
            ) from None
        return _checked(data)


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        text_storable_check(_form_fields(data))
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        text_storable_check(_form_fields(parsed.data))
        return parsed


class ApiRequestSizeMiddleware:
    """A body over DATA_UPLOAD_MAX_MEMORY_SIZE sent to /api/ is answered 413 in the API's
    shape before anything reads it (Django would answer its HTML "Bad Request (400)")."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return JsonResponse(
                    {
                        "code": "REQUEST_TOO_LARGE",
                        "message": f"The body has {length} bytes; at most {limit} are accepted.",
                        "extra": {"max_bytes": limit},
                    },
                    status=413,
                )
        return self.get_response(request)
