from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"

    def ready(self):
        # The proposal's decision screen reads what the advisor saw through this part.
        from evaluation import decision  # noqa: F401
