"""One settings module, driven by the environment.

With an empty environment the product runs on embedded defaults: a SQLite file and a
filesystem broker under var/, and the local Bitvavo simulator in paper mode. Exchange and
LLM secrets are not read here: each client reads its own key when first used, so a process
whose role does not need a key never holds it.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)

# A development key is generated once per checkout; production must set its own.
if DEBUG:
    _dev_key_file = VAR_DIR / "dev-secret-key"
    if not _dev_key_file.exists():
        import secrets

        VAR_DIR.mkdir(exist_ok=True)
        _dev_key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = env.str("SECRET_KEY", default=_dev_key_file.read_text().strip())
else:
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS ---------------------------------------------------------------------------------
# Safe for production by default (DEBUG=false): HTTPS only, secure cookies, HSTS. The demo
# (DEBUG=true) serves plain HTTP on loopback, so there each one defaults to off.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# The container's own health probe asks over plain HTTP from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
# The header the TLS-terminating reverse proxy sets (nginx, Traefik, a cloud balancer: usually
# X-Forwarded-Proto); empty when clients reach the web process directly, who could forge it.
_proxy_ssl_header = env.str(
    "SECURE_PROXY_SSL_HEADER", default="" if DEBUG else "HTTP_X_FORWARDED_PROTO"
)
SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https") if _proxy_ssl_header else None
# A staff session ends after this many seconds (default 8 hours), signed in or not used.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)

# Which process this is: web, beat, scan or execute. Only `execute` may build a trade client.
ORACLE_ROLE = env.str("ORACLE_ROLE", default="web")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Kept only so the accounts migration can move the old plaintext tokens over (hashed).
    "rest_framework.authtoken",
    "knox",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from our own static files
    "django_celery_beat",
    "exchange",
    "budget",
    "notifications",
    "scheduler",
    "trading",
    "ops",
    "evaluation",
    "portfolio",
    "accounts",
]

MIDDLEWARE = [
    # First, so an oversized API body gets the API's 413 before anything reads it.
    "core.api_input.ApiRequestSizeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session entered a TOTP code.
    "django_otp.middleware.OTPMiddleware",
    # Staff who may move money reach the console only with a confirmed, verified device.
    "accounts.middleware.StaffTwoFactorMiddleware",
    # Per-user scope for the request (Django guard and PostgreSQL row-level security).
    "core.scoping.RequestScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as its documentation asks: turns a locked-out sign-in into the lock-out answer.
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # Serves the collected static files (the admin's) under gunicorn, without a proxy; under
    # DEBUG, runserver serves them itself.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # `can_see_dashboard`, for the console's link to the operator dashboard.
                "ops.context_processors.dashboard_link",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'oracle.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs several processes on one file: wait for locks instead of failing, take
    # the write lock up front, and let readers work beside the writer (WAL).
    # Claims are serialised by that write lock, as the policy-row lock does on PostgreSQL.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    # A test database on SQLite is a file beside it (not Django's in-memory default), so
    # test threads and worker processes share it.
    sqlite_name = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(sqlite_name.with_name(f"test_{sqlite_name.name}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared state between processes (exchange rate-limit budget and bans): Redis in
# production and tests, a file cache for the zero-setup demo.
CACHES = {
    "default": env.cache("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}"),
}

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out user or address before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Every page: nothing loaded from elsewhere, no inline script (core/csp.py).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's parsers, plus the depth and storable-text checks every body passes.
    "DEFAULT_PARSER_CLASSES": [
        "core.api_input.JSONParser",
        "core.api_input.FormParser",
        "core.api_input.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # The answer's type comes from the Accept header only: ?format=x was an undocumented 404.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Auto Invest Oracle API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page loads Swagger UI from our static files (drf-spectacular-sidecar), never
    # from a CDN; its set-up script is a separate request, so the CSP needs no inline script.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.error_responses_hook",
    ],
}

# json: one JSON object per line with the event's ids (core/logs.py), the default for
# workers and beat in production; text: for people, the default for web and under DEBUG.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG or ORACLE_ROLE == "web" else "json")
if LOG_FORMAT not in ("json", "text"):
    raise environ.ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "core.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Celery -------------------------------------------------------------------------------
# Queues: `scan` (read-only key, LLM key), `execute` (trade key only) and `notify` (no
# exchange key). Unrouted tasks go to `default`, which the execute worker never consumes.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than any task's hard time limit, so a running task is never redelivered.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "trading.tasks.execute_*": {"queue": "execute"},
    # Its own queue and worker: a slow lookup never delays an order.
    "trading.tasks.reconcile_*": {"queue": "reconcile"},
    "trading.tasks.expire_*": {"queue": "scan"},
    "scheduler.tasks.*": {"queue": "scan"},
    "budget.tasks.*": {"queue": "scan"},
    "exchange.tasks.*": {"queue": "scan"},
    # Scoring reads public market data only; the scan worker is the one that reads markets.
    "evaluation.tasks.*": {"queue": "scan"},
    # Valuation reads public market data; the scan worker already talks to the exchange.
    "portfolio.tasks.*": {"queue": "scan"},
    "trading.tasks.notify_*": {"queue": "notify"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Timeouts nest: HTTP call < soft limit < hard limit < scan lease < broker visibility.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Exchange -----------------------------------------------------------------------------
# Paper mode is the default: the local simulator. Orders go to Bitvavo itself only when
# LIVE_TRADING is set.
BITVAVO_API_URL = env.str("BITVAVO_API_URL", default="http://127.0.0.1:8765/v2")
BITVAVO_OPERATOR_ID = env.int("BITVAVO_OPERATOR_ID", default=1)
BITVAVO_ACCESS_WINDOW_MS = env.int("BITVAVO_ACCESS_WINDOW_MS", default=10000)
BITVAVO_CONNECT_TIMEOUT = env.float("BITVAVO_CONNECT_TIMEOUT", default=3.0)
BITVAVO_READ_TIMEOUT = env.float("BITVAVO_READ_TIMEOUT", default=10.0)
LIVE_TRADING = env.bool("LIVE_TRADING", default=False)
# The taker fee a market order pays, each way: proposals are scored after it (in and out).
BITVAVO_TAKER_FEE = Decimal(env.str("BITVAVO_TAKER_FEE", default="0.0025"))

# --- LLM ----------------------------------------------------------------------------------
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
OPENAI_TIMEOUT = env.float("OPENAI_TIMEOUT", default=30.0)
# What a model costs, EUR per million tokens, prompt:completion, per model. A model not
# listed has an unknown (empty) cost; the offline advisor costs nothing.
LLM_PRICES_EUR_PER_MTOK = {
    model.strip(): tuple(Decimal(price) for price in prices.split(":"))
    for model, _, prices in (
        item.partition("=")
        for item in env.list(
            "LLM_PRICES_EUR_PER_MTOK",
            default=["gpt-4o-mini=0.14:0.55", "gpt-4o=2.30:9.20", "gpt-4.1-mini=0.37:1.47"],
        )
    )
}
# The advisor's own scored proposals shown back to it in the prompt: at most this many
# tokens (about four characters each).
ADVISOR_TRACK_RECORD_MAX_TOKENS = env.int("ADVISOR_TRACK_RECORD_MAX_TOKENS", default=600)

# --- Execution ------------------------------------------------------------------------------
# A SUBMITTING execution is looked up only once its request can no longer be in flight.
EXECUTION_RECONCILE_AFTER_SECONDS = env.int("EXECUTION_RECONCILE_AFTER_SECONDS", default=30)
# "Not found" becomes FAILED only after this many lookups, and after the access window.
EXECUTION_RECONCILE_MIN_LOOKUPS = env.int("EXECUTION_RECONCILE_MIN_LOOKUPS", default=3)
# One reconcile run's budget: rows looked up, and seconds after which no new row is started
# (a row is at most two lookups of one HTTP timeout each: well inside the soft time limit).
EXECUTION_RECONCILE_MAX_LOOKUPS = env.int("EXECUTION_RECONCILE_MAX_LOOKUPS", default=20)
EXECUTION_RECONCILE_MAX_SECONDS = env.float("EXECUTION_RECONCILE_MAX_SECONDS", default=25.0)
# A CLAIMED execution nobody moved on for this long is failed (nothing was sent).
EXECUTION_CLAIM_STALE_SECONDS = env.int("EXECUTION_CLAIM_STALE_SECONDS", default=900)
# How long the send step looks an order up until it is final; after that, the reconciler.
EXECUTION_FILL_WAIT_SECONDS = env.float("EXECUTION_FILL_WAIT_SECONDS", default=2.0)
# The balance recheck trusts a snapshot taken with the read-only key for this long.
BALANCE_MAX_AGE_SECONDS = env.int("BALANCE_MAX_AGE_SECONDS", default=600)
# Market rules (status, minimums) are cached this long between executions.
MARKET_RULES_CACHE_SECONDS = env.int("MARKET_RULES_CACHE_SECONDS", default=60)

# --- Portfolio ----------------------------------------------------------------------------
# Last prices used to value positions are at most this old (shared cache).
PORTFOLIO_PRICE_CACHE_SECONDS = env.int("PORTFOLIO_PRICE_CACHE_SECONDS", default=30)
# Per asset, the users' holdings plus unallocated funds may differ from the exchange's
# balance by at most this much (valued in EUR) before it is an alert (fees, rounding dust).
HOLDINGS_TOLERANCE_EUR = Decimal(env.str("HOLDINGS_TOLERANCE_EUR", default="1.00"))

# --- Scans --------------------------------------------------------------------------------
# A scan's lease; longer than the task's hard time limit, so a running scan keeps its job.
SCAN_LEASE_SECONDS = env.int("SCAN_LEASE_SECONDS", default=120)
SCAN_DISPATCH_BATCH = env.int("SCAN_DISPATCH_BATCH", default=100)
# One market read (ticker, candles) serves every scan of that market for this long (shared
# cache, the bucket is aligned to the clock), so exchange weight grows with markets, not users.
MARKET_SNAPSHOT_CACHE_SECONDS = env.int("MARKET_SNAPSHOT_CACHE_SECONDS", default=60)
# Snapshot figures are rounded to this many significant digits before hashing; a scan whose
# hash equals the user's last decision's records `unchanged` without an LLM call (0: never).
SCAN_UNCHANGED_DIGITS = env.int("SCAN_UNCHANGED_DIGITS", default=3)

# --- Retention ----------------------------------------------------------------------------
# High-volume logs are pruned by beat (ops.tasks.prune_logs) in batches of RETENTION_BATCH rows,
# one short transaction each. Never pruned: order calls (trade key or client order id),
# executions, fills, trade history, proposals and their events, decisions with a proposal.
RETENTION_MARKET_DATA_CALLS_DAYS = env.int("RETENTION_MARKET_DATA_CALLS_DAYS", default=7)
RETENTION_LLM_USAGE_DAYS = env.int("RETENTION_LLM_USAGE_DAYS", default=90)
RETENTION_DECISIONS_DAYS = env.int("RETENTION_DECISIONS_DAYS", default=30)
RETENTION_DELIVERED_NOTIFICATIONS_DAYS = env.int(
    "RETENTION_DELIVERED_NOTIFICATIONS_DAYS", default=30
)
RETENTION_BATCH = env.int("RETENTION_BATCH", default=1000)

# --- Notifications --------------------------------------------------------------------------
# Links in notifications point at the approval console under this address.
CONSOLE_BASE_URL = env.str("CONSOLE_BASE_URL", default="http://127.0.0.1:8000")
# A delivery is tried this often, waiting BACKOFF, 2*BACKOFF, 4*BACKOFF, ... in between.
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=5)
NOTIFY_RETRY_BACKOFF_SECONDS = env.float("NOTIFY_RETRY_BACKOFF_SECONDS", default=30.0)
NOTIFY_CONNECT_TIMEOUT = env.float("NOTIFY_CONNECT_TIMEOUT", default=2.0)
NOTIFY_READ_TIMEOUT = env.float("NOTIFY_READ_TIMEOUT", default=5.0)
# Webhooks to loopback, private or link-local addresses: only in development by default.
NOTIFY_ALLOW_PRIVATE_WEBHOOKS = env.bool("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", default=DEBUG)
# The Telegram bot (cards with Approve / Reject / Execute): off without a token.
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_API_URL = env.str("TELEGRAM_API_URL", default="https://api.telegram.org")
# Updates by webhook (/telegram/webhook/<secret>, also checked in Telegram's secret header);
# empty: the webhook is off and `manage.py telegram_bot` polls instead.
TELEGRAM_WEBHOOK_SECRET = env.str("TELEGRAM_WEBHOOK_SECRET", default="")
TELEGRAM_POLL_TIMEOUT = env.int("TELEGRAM_POLL_TIMEOUT", default=30)
# E-mail: one URL (smtp+tls://user:password@host:587, consolemail://, ...).
globals().update(
    {
        name: value
        for name, value in env.email_url("EMAIL_URL", default="consolemail://").items()
        if name.startswith("EMAIL_") and value is not None
    }
)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="oracle@localhost")

# --- Accounts: API tokens, two-factor sign-in, sign-in limits, /metrics ----------------------
# API tokens are stored as SHA-512 digests (django-rest-knox) with a name, scope and expiry.
KNOX_TOKEN_MODEL = "accounts.ApiToken"  # noqa: S105 - a model name
# knox's own migrations would create its unused default token table (they ignore the swap).
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    # A token with no expiry given lives this long (default 90 days).
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=90)),
    "AUTH_HEADER_PREFIX": "Token",
}
# Lifting the emergency stop or overriding a guard needs a TOTP code entered this recently.
FRESH_AUTH_SECONDS = env.int("FRESH_AUTH_SECONDS", default=300)
# The issuer shown in authenticator apps next to the user name.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Auto Invest Oracle")
# Failed sign-ins (django-axes): after AXES_FAILURE_LIMIT failures from one user name or one
# address, sign-in is refused for AXES_COOLOFF_MINUTES. Staff see and lift lock-outs in the
# console (Axes: access attempts).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Where the client's address comes from: the connection by default; behind one reverse proxy
# set AXES_IPWARE_META_PRECEDENCE_ORDER=HTTP_X_FORWARDED_FOR,REMOTE_ADDR and
# AXES_IPWARE_PROXY_COUNT=1 (a header a client can forge is never trusted by default).
AXES_IPWARE_META_PRECEDENCE_ORDER = env.list(
    "AXES_IPWARE_META_PRECEDENCE_ORDER", default=["REMOTE_ADDR"]
)
AXES_IPWARE_PROXY_COUNT = env.int("AXES_IPWARE_PROXY_COUNT", default=0) or None
# /metrics answers only `Authorization: Bearer <METRICS_BEARER_TOKEN>` (Prometheus'
# `authorization` or `bearer_token` scrape option). Unset: open in DEBUG, closed otherwise.
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
