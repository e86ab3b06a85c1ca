from core.errors import DomainError


class BudgetError(DomainError):
    code = "BUDGET_ERROR"


class BudgetExhausted(BudgetError):
    """Carries DAILY_BUDGET_EXHAUSTED or HOURLY_BUDGET_EXHAUSTED; the refusal is logged."""

    code = "BUDGET_EXHAUSTED"
    http_status = 429


class UsageStateConflict(BudgetError):
    code = "USAGE_NOT_RESERVED"
    http_status = 409
