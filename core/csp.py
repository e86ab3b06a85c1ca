"""The Content-Security-Policy of every page: scripts, styles, fonts, images and requests
only from our own origin (static files are vendored), no plugins, no framing. Inline style
attributes stay allowed (the admin's templates use them); inline scripts do not."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
