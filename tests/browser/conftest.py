"""What every browser test shares: headless Chromium at 1440×900 with its request and console
logs, the execute worker behind the console's Execute, and the operator who signs in."""

import tempfile

import pytest
from django.contrib.auth.models import Permission
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from config.celery import app
from tests.factories import UserFactory, totp_device
from tests.workers import celery_worker

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PASSWORD = "correct horse battery staple"  # the factories' password
WIDTH, HEIGHT = 1440, 900


@pytest.fixture
def browser():
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        # Every request the page makes (performance) and every console message (browser).
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            # The viewport, not the window, is what "above the fold" means.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            )
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def execute_worker(exchange):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("execute")
    env = {
        "ORACLE_ROLE": "execute",
        "BITVAVO_API_URL": exchange.api_url,
        "BITVAVO_READONLY_KEY": "",
        "BITVAVO_READONLY_SECRET": "",
        **exchange.server.trade_env(),
    }
    with celery_worker(queue="execute", env=env) as worker:
        yield worker


def operator():
    """Olivia, staff who may approve and execute, with a confirmed TOTP device (who may move
    money signs in with a second factor)."""
    user = UserFactory(username="olivia", is_staff=True)
    codenames = [
        "view_tradeproposal",
        "view_tradeexecution",
        "approve_proposal",
        "execute_proposal",
    ]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    totp_device(user)
    return user
