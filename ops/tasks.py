from celery import shared_task

from ops.retention import logs_prune


@shared_task
def prune_logs() -> dict:
    return logs_prune()
