from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"

    def ready(self):
        # The notify worker reads trading's events through the builders this registers.
        from trading import notices  # noqa: F401
