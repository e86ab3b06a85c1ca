from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and audit"

    def ready(self):
        # Registers the token scheme with the API schema generator.
        from accounts import openapi  # noqa: F401
