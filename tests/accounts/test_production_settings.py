"""Production mode (DEBUG=false and a real SECRET_KEY): `check --deploy` reports nothing; plain
HTTP is redirected to HTTPS (the reverse proxy's X-Forwarded-Proto is trusted), HSTS and secure
cookies are on, /healthz answers the container's plain-HTTP probe. The demo (DEBUG=true) keeps
plain HTTP on loopback. Each runs in a fresh process, as the settings are read at start."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "oracle.example.com",
    "METRICS_BEARER_TOKEN": "scrape",
}

REQUESTS = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
plain = Client().get("/api/v1/proposals/", HTTP_HOST="oracle.example.com")
proxied = Client().get(
    "/admin/login/", HTTP_HOST="oracle.example.com", HTTP_X_FORWARDED_PROTO="https"
)
health = Client().get("/healthz", HTTP_HOST="oracle.example.com")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security", "")],
    "cookies_secure": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "health": health.status_code,
}))
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_check_deploy_reports_no_issue_in_production_mode():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_does_fail_when_a_protection_is_turned_off():
    # The control: the same check does see a missing protection.
    env = {**PRODUCTION, "SECURE_HSTS_SECONDS": "0", "SESSION_COOKIE_SECURE": "false"}
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr


def test_production_redirects_to_https_sends_hsts_and_keeps_the_health_probe_plain():
    result = run(["-c", REQUESTS], PRODUCTION)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["plain"] == [301, "https://oracle.example.com/api/v1/proposals/"]
    status, hsts = report["proxied"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert report["cookies_secure"] == [True, True]
    assert report["health"] in (200, 503)  # answered, not redirected


def test_the_demo_serves_plain_http():
    result = run(["-c", REQUESTS.replace("oracle.example.com", "127.0.0.1")], {"DEBUG": "true"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["plain"][0] != 301
    assert report["cookies_secure"] == [False, False]
