"""Thin Celery interfaces: take ids, call one service.

The send and reconcile modules (and with them the trade client) are imported inside the
tasks, so a process that only publishes tasks (web, beat) never loads them.
"""

from celery import shared_task

from notifications.services import notification_deliver, notification_event_handle


@shared_task(bind=True, max_retries=10)
def execute_claim(self, execution_id: int) -> dict:
    """Sends one CLAIMED execution (claimed by the web process); duplicates change nothing."""
    from trading.models import TradeExecution
    from trading.send import execution_send

    execution = TradeExecution.objects.filter(pk=execution_id).first()
    outcome = execution_send(execution=execution) if execution else None
    if outcome is not None and outcome.retry_after_seconds is not None:
        # Rate limited before anything was sent: the claim stands and is sent later.
        raise self.retry(countdown=outcome.retry_after_seconds)
    sent = outcome.execution if outcome else None
    return {
        "execution_id": execution_id,
        "status": sent.status if sent else "WITHDRAWN",
        "refused_codes": outcome.refused_codes if outcome else [],
    }


@shared_task
def reconcile_submitting_executions() -> dict:
    from trading.reconcile import executions_reconcile

    return executions_reconcile()


@shared_task
def expire_proposals() -> int:
    from trading.services import proposals_expire

    return proposals_expire()


@shared_task
def notify_event(event: str, facts: dict) -> list[int]:
    return notification_event_handle(event=event, facts=facts)


@shared_task(bind=True, max_retries=None)
def notify_deliver(self, delivery_id: int) -> None:
    # The attempt count on the delivery row decides when to stop, not Celery's.
    retry_in = notification_deliver(delivery_id=delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
