"""API token authentication: django-rest-knox's hashed tokens, plus their scope.

A `read` token may only read (GET, HEAD, OPTIONS); approving, rejecting, executing, changing
the policy or anything else that writes needs a `trade` token. The token user's request
scope is entered once the user is known (core.scoping).
"""

from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS

from accounts.errors import TokenReadOnly
from accounts.models import ApiToken
from accounts.services import api_token_touch
from core.scoping import scope_enter_user


class ApiTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, token = result
        if token.scope != ApiToken.Scope.TRADE and request.method not in SAFE_METHODS:
            raise TokenReadOnly(
                "This token may only read: writing needs a token with the trade scope.",
                extra={"scope": token.scope},
            )
        api_token_touch(token=token)
        scope_enter_user(user)
        return result

    def authenticate_credentials(self, token: bytes):
        # A header that is not UTF-8 is a wrong token, not a server error.
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)
