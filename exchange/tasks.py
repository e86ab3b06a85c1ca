from celery import shared_task


@shared_task
def refresh_balances() -> int:
    from exchange.services import balances_refresh

    return balances_refresh()
