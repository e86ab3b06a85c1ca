"""Errors of accounts, with stable codes."""

from core.errors import DomainError


class TokenReadOnly(DomainError):
    code = "TOKEN_READ_ONLY"
    http_status = 403


class TokenInvalid(DomainError):
    code = "TOKEN_INVALID"
    http_status = 400
