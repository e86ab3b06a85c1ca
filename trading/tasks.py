"""Thin Celery interfaces: take ids, call one service.

The execution module (and with it the trade client) is imported inside the tasks, so a
process that only publishes tasks (web, beat) never loads it.
"""

from celery import shared_task

from notifications.services import notification_deliver, notification_event_handle


@shared_task(bind=True, max_retries=10)
def execute_proposal(self, proposal_id: int, actor_id: int | None = None) -> dict:
    from trading.execution import execution_run

    outcome = execution_run(proposal_id=proposal_id, actor_id=actor_id)
    if outcome.retry_after_seconds is not None:
        # Rate limited before anything was sent: the claim stands and is sent later.
        raise self.retry(countdown=outcome.retry_after_seconds)
    execution = outcome.execution
    return {
        "proposal_id": proposal_id,
        "execution_id": execution.pk if execution else None,
        "status": execution.status if execution else "REFUSED",
        "refused_codes": outcome.refused_codes,
    }


@shared_task
def reconcile_submitting_executions() -> dict:
    from trading.execution import executions_reconcile

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
