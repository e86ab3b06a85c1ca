from django.apps import AppConfig


class PortfolioConfig(AppConfig):
    name = "portfolio"

    def ready(self):
        # The proposal's decision screen reads the holding through the part this registers.
        from portfolio import decision  # noqa: F401
