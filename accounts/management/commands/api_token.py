"""Creates, lists and revokes API tokens. A new token is printed once: only its digest is kept.

manage.py api_token create alice --name ci --scope read --days 30
manage.py api_token list [alice]
manage.py api_token revoke <token_key>
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.errors import TokenInvalid
from accounts.models import ApiToken
from accounts.selectors import api_tokens_list


class Command(BaseCommand):
    help = "Creates, lists and revokes API tokens (stored hashed; shown once when created)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new token for a user")
        create.add_argument("username")
        create.add_argument("--name", required=True)
        create.add_argument("--scope", choices=ApiToken.Scope.values, default="read")
        create.add_argument("--days", type=int, default=None, help="lifetime (default: TTL)")
        listing = sub.add_parser("list", help="tokens, of one user or all")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="deletes the token(s) starting with this key")
        revoke.add_argument("token_key")

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    @staticmethod
    def _user(username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None

    def _create(self, *, username: str, name: str, scope: str, days: int | None, **_):
        try:
            token, plaintext = services.api_token_create(
                user=self._user(username), name=name, scope=scope, expires_in_days=days
            )
        except TokenInvalid as error:
            raise CommandError(str(error)) from None
        expiry = token.expiry.isoformat(timespec="seconds") if token.expiry else "never"
        self.stdout.write(f"token for {username} ({scope}, expires {expiry}), shown once:")
        self.stdout.write(plaintext)

    def _list(self, *, username: str | None, **_):
        tokens = api_tokens_list(user=self._user(username) if username else None)
        for t in tokens:
            used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
            expiry = t.expiry.isoformat(timespec="seconds") if t.expiry else "never"
            self.stdout.write(
                f"{t.token_key}  {t.user.get_username():<16} {t.scope:<5}  {t.name:<20} "
                f"expires {expiry}  last used {used}"
            )

    def _revoke(self, *, token_key: str, **_):
        tokens = list(ApiToken.objects.filter(token_key=token_key).select_related("user"))
        if not tokens:
            raise CommandError(f"No token with key {token_key!r} (see `api_token list`).")
        for token in tokens:
            services.api_token_revoke(token=token)
        self.stdout.write(f"{len(tokens)} token(s) revoked.")
