from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records and facts written by services: browsable, never editable here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
