"""The site's URLs: each app's own urls.py, included. API paths live under /api/v1/."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.exceptions import api_not_found
from evaluation import urls as evaluation_urls
from notifications import urls as notifications_urls
from ops import urls as ops_urls
from portfolio import urls as portfolio_urls

api_v1 = [
    path("", include("trading.urls")),
    path("", include("scheduler.urls")),
    path("", include("notifications.urls")),
    path("", include(ops_urls.api_urlpatterns)),
    path("", include(evaluation_urls.api_urlpatterns)),
    path("", include(portfolio_urls.api_urlpatterns)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # Last: whatever matched nothing above is a JSON 404, not Django's HTML page; a path
    # holding a line break (%0A) too, which "." alone would not match.
    re_path(r"^(?P<path>[\s\S]*)$", api_not_found, name="not-found"),
]

# The admin's "View site" leads to the console itself (there is no other site).
admin.site.site_url = "/admin/"

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("evaluation.urls")),
    path("", include("portfolio.urls")),
    path("", include(notifications_urls.site_urlpatterns)),
    path("", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
]
