from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"

    def ready(self):
        # The proposal's decision screen reads what the advisor saw through this part.
        from evaluation import decision  # noqa: F401

        # The bot's decision card shows the advisor's record at the proposal's confidence.
        from evaluation.selectors import advisor_record_line
        from trading.telegram import advisor_record_register

        advisor_record_register(advisor_record_line)
