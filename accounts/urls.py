"""The console's two-factor pages (outside /admin/, which they guard)."""

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("accounts/two-factor/setup/", views.two_factor_setup, name="two_factor_setup"),
    path("accounts/two-factor/verify/", views.two_factor_verify, name="two_factor_verify"),
]
