import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from exchange.simulator.state import DEFAULT_BALANCES
from scheduler.models import ScanJob
from trading.models import AccountFunds, Policy


class Command(BaseCommand):
    help = (
        "Creates the demo staff user (new password each run, and a new two-factor enrolment),"
        " a paper-trading policy and scans."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username="demo", defaults={"email": "demo@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        # New credentials each run: the old authenticator entry goes with the old password.
        # The first sign-in then shows the enrolment page with its QR code.
        TOTPDevice.objects.filter(user=user).delete()
        Policy.objects.update_or_create(
            user=user,
            defaults={
                "trading_enabled": True,
                "allowlist": ["BTC-EUR", "ETH-EUR"],
                "min_order_eur": 10,
                "max_order_eur": 50,
                "min_confidence": 25,
                "cooldown_minutes": 5,
                "anti_flip_minutes": 30,
                "max_daily_trades": 20,
                "max_trades_per_hour": 6,
                "allocation_eur": 500,
                "gpt_daily_limit": 200,
                "gpt_hourly_limit": 30,
                "proposal_ttl_minutes": 30,
            },
        )
        # The simulator's starting balances are the account's funds: the demo's parts add up.
        for asset, amount in DEFAULT_BALANCES.items():
            AccountFunds.objects.get_or_create(
                asset=asset, defaults={"amount": amount, "note": "the simulator's start"}
            )
        if not ScanJob.objects.filter(user=user).exists():
            # One market each: two jobs on the same markets only ask the same question twice.
            for markets in (["BTC-EUR"], ["ETH-EUR"]):
                ScanJob.objects.create(user=user, markets=markets, interval_minutes=2)
        self.stdout.write(
            f"demo login: user 'demo', password '{password}'; after signing in, scan the QR "
            "code shown with any TOTP app (or type its key in) and enter the code"
        )
