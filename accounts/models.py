"""API tokens (stored hashed) and the audit log of staff actions that change money or rules."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from knox.models import AbstractAuthToken


class ApiToken(AbstractAuthToken):
    """A client's API token. Only its SHA-512 digest and first characters are stored
    (django-rest-knox): a copy of the table does not authenticate anyone."""

    class Scope(models.TextChoices):
        READ = "read", "read: GET only"
        TRADE = "trade", "trade: may approve, reject, execute and change the policy"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=5, choices=Scope.choices, default=Scope.READ)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_tokens"
        ordering = ("-created",)
        constraints = [
            models.CheckConstraint(
                condition=Q(scope__in=["read", "trade"]), name="accounts_apitoken_scope_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope}, {self.token_key}…)"


class AuditEntry(models.Model):
    """One staff or client action that changed money or rules. Append-only: services write it
    in the transaction of the change; the console only reads it.

    `actor` is who acted (None for a process); `actor_name` keeps the name if the user goes.
    `address` is the client's address of the web request, None outside a request.
    """

    class Action(models.TextChoices):
        PROPOSAL_APPROVE = "proposal_approve"
        PROPOSAL_REJECT = "proposal_reject"
        EXECUTION_REQUEST = "execution_request"
        OVERRIDE_SET = "override_set"
        KILL_SWITCH = "kill_switch"
        EMERGENCY_STOP = "emergency_stop"
        POLICY_CHANGE = "policy_change"
        TOKEN_CREATE = "token_create"  # noqa: S105 - an action name
        TOKEN_REVOKE = "token_revoke"  # noqa: S105 - an action name

    created_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    subject = models.CharField(max_length=200)
    address = models.GenericIPAddressField(null=True, blank=True)
    before = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        db_table = "audit_entries"
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["-created_at"], name="audit_entries_created")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or '-'} {self.action}"
