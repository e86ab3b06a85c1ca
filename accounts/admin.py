"""The console's views of API tokens (list, revoke) and of the audit log (read only)."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from rest_framework.authtoken.models import TokenProxy

from accounts import services
from accounts.models import ApiToken, AuditEntry
from core.admin import ReadOnlyAdmin

# The old plaintext tokens authenticate nobody any more (migration 0002 moved them over): no
# page to make new ones.
admin.site.unregister(TokenProxy)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are made by `manage.py api_token create` (shown once); here they are listed and
    revoked. Only the digest is stored, so nothing here can show a token again."""

    list_display = ("user", "name", "scope", "token_key", "created", "expiry", "last_used_at")
    list_filter = ("scope",)
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "token_key")
    fields = ("user", "name", "scope", "token_key", "created", "expiry", "last_used_at")
    readonly_fields = fields
    actions = ("revoke_selected",)

    def has_revoke_permission(self, request):
        return request.user.has_perm("accounts.delete_apitoken")

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset: QuerySet[ApiToken]):
        tokens = list(queryset.select_related("user"))
        for token in tokens:
            services.api_token_revoke(token=token, actor=request.user)
        self.message_user(request, f"{len(tokens)} token(s) revoked.", messages.WARNING)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_name", "action", "subject", "address")
    list_filter = ("action",)
    search_fields = ("actor_name", "subject")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "actor",
        "actor_name",
        "action",
        "subject",
        "address",
        "before",
        "after",
    )
    readonly_fields = fields
    list_select_related = ("actor",)
