from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"

    def ready(self):
        # The notify worker reads trading's events through the builders this registers.
        # The bot's cards and buttons: trading's selectors and services (trading/telegram.py).
        from trading import notices, telegram  # noqa: F401
