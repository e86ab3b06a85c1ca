"""Moves every DRF authtoken token (stored as the client holds it) to a hashed API token.

The client keeps its token: the new row holds only the token's SHA-512 digest (knox's hash)
and its first 15 characters, with the trade scope it had and an expiry 90 days from now. The
plaintext rows are deleted.
"""

import hashlib
from datetime import timedelta

from django.db import migrations
from django.utils import timezone

LEGACY_TTL = timedelta(days=90)


def forwards(apps, schema_editor):
    Token = apps.get_model("authtoken", "Token")
    ApiToken = apps.get_model("accounts", "ApiToken")
    expiry = timezone.now() + LEGACY_TTL
    for legacy in Token.objects.all():
        ApiToken(
            # knox.crypto.hash_token, fixed here: a migration must not change with settings.
            digest=hashlib.sha512(legacy.key.encode()).hexdigest(),
            token_key=legacy.key[:15],
            user_id=legacy.user_id,
            expiry=expiry,
            name="migrated from the old token",
            scope="trade",
        ).save(force_insert=True)
    Token.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_api_tokens_and_audit_log"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
