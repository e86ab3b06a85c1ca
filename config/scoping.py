"""Per-user scoping of user-owned rows, in one place."""

from django.db import models


class UserOwnedQuerySet(models.QuerySet):
    def for_user(self, user) -> "UserOwnedQuerySet":
        # An anonymous or missing user sees nothing rather than everything.
        if user is None or not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(user=user)
