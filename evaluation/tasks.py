"""Thin Celery interfaces: call one service."""

from dataclasses import asdict

from celery import shared_task

from evaluation.scoring import proposals_score


@shared_task
def score_proposals() -> dict:
    return asdict(proposals_score())
