from celery import shared_task

from budget.services import budget_reservations_abandon


@shared_task
def close_abandoned_reservations() -> int:
    return budget_reservations_abandon()
