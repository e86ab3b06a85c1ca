from celery import shared_task

from portfolio.services import daily_summaries_send, portfolio_snapshots_take_all


@shared_task
def snapshot_portfolios() -> int:
    return portfolio_snapshots_take_all()


@shared_task
def send_daily_summaries() -> int:
    return daily_summaries_send()
