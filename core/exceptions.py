"""One JSON shape for every API error: {"code", "message", "extra"}, with a stable code."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import DomainError

DRF_CODES = {
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.AuthenticationFailed: "AUTHENTICATION_FAILED",
    exceptions.PermissionDenied: "PERMISSION_DENIED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.ParseError: "MALFORMED_REQUEST",
    exceptions.Throttled: "THROTTLED",
    exceptions.ValidationError: "INVALID_INPUT",
}


def _body(code: str, message: str, extra: dict | None = None) -> dict:
    return {"code": code, "message": message, "extra": extra or {}}


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        return Response(
            _body("INVALID_INPUT", "The input is not valid.", {"fields": fields}),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), "API_ERROR")
    if isinstance(exc, exceptions.ValidationError):
        response.data = _body(code, "The input is not valid.", {"fields": response.data})
    else:
        response.data = _body(code, str(exc.detail))
    return response


@csrf_exempt  # nothing to protect: it only answers 404
def api_not_found(request, path: str = ""):
    """Any address under /api/ that no endpoint matches (an id that is not a number, say):
    the same JSON error shape as every other API error, in DEBUG too."""
    return JsonResponse(_body("NOT_FOUND", f"Nothing at {request.path}."), status=404)
