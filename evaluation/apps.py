from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"

    def ready(self):
        # The decision screen and the bot's card read what the advisor saw, and its record,
        # through this part.
        from evaluation import decision  # noqa: F401
