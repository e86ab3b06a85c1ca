"""The audit log's one writer, and the client address of the current web request.

Services call `audit_record` inside the transaction of the change they audit, so an entry
exists exactly when the change does. The address comes from the request the middleware is
serving (None in workers and commands).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model

from accounts.models import AuditEntry

_address: ContextVar[str | None] = ContextVar("oracle_client_address", default=None)


def client_address_set(address: str | None):
    """Sets the current request's client address; returns the token to reset it with."""
    return _address.set(address)


def client_address_reset(token) -> None:
    _address.reset(token)


def audit_record(
    *,
    actor=None,
    actor_id: int | None = None,
    action: str,
    subject: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Appends one entry: who (`actor`, a user, or `actor_id`; None for a process), what, on
    what, before and after."""
    if actor is None and actor_id is not None:
        actor = get_user_model().objects.filter(pk=actor_id).first()
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    entry = AuditEntry(
        actor=actor if is_user else None,
        actor_name=actor.get_username() if is_user else "",
        action=action,
        subject=subject[:200],
        address=_address.get(),
        before=before or {},
        after=after or {},
    )
    entry.full_clean()
    entry.save()
    return entry
