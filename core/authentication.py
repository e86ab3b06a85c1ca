from rest_framework.authentication import TokenAuthentication

from core.scoping import scope_enter_user


class ScopedTokenAuthentication(TokenAuthentication):
    """Token authentication that enters the token user's request scope once it is known."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            scope_enter_user(result[0])
        return result
