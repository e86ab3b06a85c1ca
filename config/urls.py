"""The site's URLs: each app's own urls.py, included. API paths live under /api/v1/."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.exceptions import api_not_found
from evaluation import urls as evaluation_urls
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
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Last: whatever matched nothing above is a JSON 404, not Django's HTML page.
    re_path(r"^(?P<path>.*)$", api_not_found, name="not-found"),
]

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("evaluation.urls")),
    path("", include("portfolio.urls")),
    path("", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
]
