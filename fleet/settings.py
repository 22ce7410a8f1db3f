"""Clawfleet settings: one module, configured from the environment, safe development defaults.

Every variable read here is listed with its default in README.md ("Configuration").
"""

import base64
import hashlib
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Off unless set: `make run` sets DEBUG=true for development. pytest runs the suite as development
# (it exports PYTEST_VERSION to the process and the workers it starts; production never has it).
DEBUG = env.bool("DEBUG", default=bool(env.str("PYTEST_VERSION", default="")))

# Secrets a production process must be given, never defaulted: with DEBUG off a missing one
# stops the process at start (see "Required in production" below), naming it.
_MISSING: list[str] = []
_DEV_SECRET_KEY = "dev-insecure-change-me-" + "x" * 40


def _secret(name: str, dev_default: str) -> str:
    value = env.str(name, default="").strip()
    if not value and not DEBUG:
        _MISSING.append(name)
    return value or (dev_default if DEBUG else "")


def _dev_fernet_key(label: str) -> str:
    """A Fernet key derived from SECRET_KEY, for development only."""
    digest = hashlib.sha256(f"{label}{SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


SECRET_KEY = _secret("SECRET_KEY", _DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# Fernet keys for secrets at rest (gateway tokens, provider keys). A comma-separated list: the
# first encrypts, all decrypt (rotation). Only development derives one from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = [
    k.strip() for k in _secret("FIELD_ENCRYPTION_KEYS", _dev_fernet_key("")).split(",") if k.strip()
]
# Backups have their own Fernet keys (BACKUP_ENCRYPTION_KEY, comma-separated for rotation: the
# first encrypts, all decrypt), so that a leaked database key does not open the backups too.
BACKUP_ENCRYPTION_KEYS = [
    k.strip()
    for k in _secret("BACKUP_ENCRYPTION_KEY", _dev_fernet_key("clawfleet-backups:")).split(",")
    if k.strip()
]
BACKUP_ENCRYPTION_KEY = BACKUP_ENCRYPTION_KEYS[0] if BACKUP_ENCRYPTION_KEYS else ""

# Behind a reverse proxy (Caddy, a load balancer) REMOTE_ADDR is the proxy's address. The client's
# address for audit rows, token last-use and rate limits then comes from a header the proxy sets:
# TRUSTED_CLIENT_IP_HEADER (e.g. X-Real-IP, CF-Connecting-IP; the proxy must overwrite it) or else
# X-Forwarded-For read from the right, past TRUSTED_PROXY_COUNT proxies. Neither set: REMOTE_ADDR,
# and X-Forwarded-For is ignored (a client could write anything there). accounts.client_ip reads
# these; allauth's rate limits and DRF's throttles use the same function.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
TRUSTED_CLIENT_IP_HEADER = env.str("TRUSTED_CLIENT_IP_HEADER", default="").strip()
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT
ALLAUTH_TRUSTED_CLIENT_IP_HEADER = TRUSTED_CLIENT_IP_HEADER or None

INSTALLED_APPS = [
    "fleet.apps.FleetAdminConfig",  # django.contrib.admin on the staff site (fleet/admin.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_htmx",
    "accounts",
    "instances",
    "sessions_mgmt",
    "billing",
    "channels",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.CurrentOrganizationMiddleware",
]

ROOT_URLCONF = "fleet.urls"
WSGI_APPLICATION = "fleet.wsgi.application"

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
                "accounts.context_processors.organizations",
            ],
        },
    },
]

# An embedded SQLite file keeps a laptop working; DATABASE_URL switches to PostgreSQL.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# Persistent connections: a new PostgreSQL connection per request cost ~12 ms (bench/api).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# A real cache: allauth's rate limits and DRF throttles need counters shared by all processes.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_URL", default="redis://127.0.0.1:6379/1"),
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="clawfleet"),
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "home"

# django-allauth: email is the login, verified before first use, rate limits on (allauth default).
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
# Invitations sent per hour, per organization and per inviting person (their organizations
# together): a form error on the page, a 429 in the API beyond that.
INVITATIONS_PER_HOUR_PER_ORG = env.int("INVITATIONS_PER_HOUR_PER_ORG", default=20)
INVITATIONS_PER_HOUR_PER_USER = env.int("INVITATIONS_PER_HOUR_PER_USER", default=30)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Clawfleet"

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Clawfleet <noreply@clawfleet.local>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app's static folders in development (no collectstatic needed).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND",
            default="django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "fleet.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["fleet.api.OrganizationRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"organization": env.str("API_RATE_LIMIT", default="1200/min")},
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Clawfleet API",
    "DESCRIPTION": "Run managed OpenClaw instances for your clients.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SECURITY": [{"ApiToken": []}],
    # The schema says what the code refuses: no NUL character in any string we accept.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "fleet.api.schema_strings_without_nul",
    ],
    # Choice sets that share a field name across models get explicit component names.
    "ENUM_NAME_OVERRIDES": {
        "InstanceStatusEnum": "instances.models.Instance.Status",
        "SessionStatusEnum": "sessions_mgmt.models.Session.Status",
        "OperationKindEnum": "instances.models.Operation.Kind",
        "OperationStateEnum": "instances.models.Operation.State",
        "BackupKindEnum": "sessions_mgmt.models.Backup.Kind",
        "BackupStateEnum": "sessions_mgmt.models.Backup.State",
        "OrganizationKindEnum": "accounts.models.Organization.Kind",
        "OpenclawVersionEnum": "fleet.settings.FLEET_OPENCLAW_VERSIONS",
        "UsageExportRowKindEnum": "billing.services.exports.ROW_KINDS",
        "WebhookDeliveryStateEnum": "notifications.models.WebhookDelivery.State",
        "ChannelKindEnum": "channels.models.Channel.Kind",
        "ChannelStatusEnum": "channels.models.Channel.Status",
        "ChannelDmPolicyEnum": "channels.models.Channel.DmPolicy",
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Longer than the longest task (a restore of a large volume, hard limit 30 min), so Redis does
# not redeliver a task that is still running.
# Tests override it (a short visibility_timeout to redeliver a killed worker's task quickly, a
# global_keyprefix to keep a test run's queues apart) through the environment, as JSON.
CELERY_BROKER_TRANSPORT_OPTIONS = env.json(
    "CELERY_BROKER_TRANSPORT_OPTIONS", default={"visibility_timeout": 3600}
)
CELERY_TASK_DEFAULT_QUEUE = "operations"
CELERY_TASK_ROUTES = {
    "instances.tasks.*": {"queue": "operations"},
    "sessions_mgmt.tasks.*": {"queue": "maintenance"},
    "billing.tasks.*": {"queue": "billing"},
    "channels.tasks.*": {"queue": "maintenance"},
    "notifications.tasks.*": {"queue": "maintenance"},
}
CELERY_TIMEZONE = "UTC"

# --- Fleet ----------------------------------------------------------------------------------
FLEET_DOCKER_URL = env.str("FLEET_DOCKER_URL", default="unix:///var/run/docker.sock")
FLEET_RUNTIME = env.str("FLEET_RUNTIME", default="instances.runtime.DockerRuntime")
# The backend of Host(kind="swarm") (docs/swarm.md).
FLEET_SWARM_RUNTIME = env.str("FLEET_SWARM_RUNTIME", default="instances.runtime.swarm.SwarmRuntime")
FLEET_STATE_STRICT = env.bool("FLEET_STATE_STRICT", default=False)
FLEET_OPENCLAW_IMAGE = env.str("FLEET_OPENCLAW_IMAGE", default="clawfleet/openclaw:{version}")
FLEET_OPENCLAW_VERSIONS = env.list("FLEET_OPENCLAW_VERSIONS", default=["2026.9.6", "2026.9.5"])
FLEET_DEFAULT_VERSION = env.str("FLEET_DEFAULT_VERSION", default=FLEET_OPENCLAW_VERSIONS[0])
FLEET_NETWORK = env.str("FLEET_NETWORK", default="clawfleet")
# Names this control plane on a shared engine (label clawfleet.plane): reconcile removes only its
# own orphans. Empty derives it from the database; production should set it explicitly.
FLEET_PLANE_ID = env.str("FLEET_PLANE_ID", default="")
FLEET_PORT_RANGE = env.str("FLEET_PORT_RANGE", default="19100-19999")
FLEET_READY_TIMEOUT = env.int("FLEET_READY_TIMEOUT", default=240)
# Warm pool (instances/pool.py, docs/warm-pool.md): pre-booted gateways per host, raised to the
# last hour's deploys on the host up to FLEET_WARM_POOL_MAX. 0 turns the pool off.
FLEET_WARM_POOL_SIZE = env.int("FLEET_WARM_POOL_SIZE", default=0)
FLEET_WARM_POOL_MAX = env.int("FLEET_WARM_POOL_MAX", default=4)
FLEET_CRASH_LOOP_THRESHOLD = env.int("FLEET_CRASH_LOOP_THRESHOLD", default=3)
FLEET_CRASH_LOOP_WINDOW = env.int("FLEET_CRASH_LOOP_WINDOW", default=300)
FLEET_RECONCILE_SECONDS = env.float("FLEET_RECONCILE_SECONDS", default=30.0)
FLEET_DELETE_GRACE_DAYS = env.int("FLEET_DELETE_GRACE_DAYS", default=7)
FLEET_BACKUP_DIR = env.str("FLEET_BACKUP_DIR", default=str(BASE_DIR / "var" / "backups"))
FLEET_BACKUP_CONCURRENCY = env.int("FLEET_BACKUP_CONCURRENCY", default=2)
# Local working space for archives in transit (empty: <FLEET_BACKUP_DIR>/.scratch).
FLEET_BACKUP_SCRATCH_DIR = env.str("FLEET_BACKUP_SCRATCH_DIR", default="")
# Days the volume copy taken before a restore is kept.
FLEET_PRERESTORE_KEEP_DAYS = env.int("FLEET_PRERESTORE_KEEP_DAYS", default=7)
# Per instance and hour (sessions_mgmt/services/quotas.py): manual backups and restores.
FLEET_MANUAL_BACKUPS_PER_HOUR = env.int("FLEET_MANUAL_BACKUPS_PER_HOUR", default=6)
FLEET_RESTORES_PER_HOUR = env.int("FLEET_RESTORES_PER_HOUR", default=3)
# Backups in S3-compatible storage (django-storages, needs boto3) when a bucket is set.
FLEET_BACKUP_S3_BUCKET = env.str("FLEET_BACKUP_S3_BUCKET", default="")
FLEET_BACKUP_S3_PREFIX = env.str("FLEET_BACKUP_S3_PREFIX", default="backups")
FLEET_BACKUP_S3_ENDPOINT_URL = env.str("FLEET_BACKUP_S3_ENDPOINT_URL", default="")
FLEET_BACKUP_S3_REGION = env.str("FLEET_BACKUP_S3_REGION", default="")
FLEET_BACKUP_S3_ACCESS_KEY_ID = env.str("FLEET_BACKUP_S3_ACCESS_KEY_ID", default="")
FLEET_BACKUP_S3_SECRET_ACCESS_KEY = env.str("FLEET_BACKUP_S3_SECRET_ACCESS_KEY", default="")
# With DEBUG off backups must go to object storage unless this says the local disk is meant.
FLEET_BACKUP_LOCAL_IN_PRODUCTION = env.bool("FLEET_BACKUP_LOCAL_IN_PRODUCTION", default=False)
FLEET_SESSION_SYNC_SECONDS = env.float("FLEET_SESSION_SYNC_SECONDS", default=180.0)
# The edge proxy (Caddy, docs/edge.md): every live instance answers at
# https://<instance>-<org>.<FLEET_BASE_DOMAIN>[:FLEET_EDGE_PUBLIC_PORT]. Development: *.localhost
# (browsers resolve it to loopback) on 8443 with Caddy's local CA; production: a wildcard DNS
# name, port 443, FLEET_EDGE_TLS=acme (on-demand certificates, each asked of FLEET_EDGE_ASK_URL).
# An empty FLEET_EDGE_ADMIN_URL turns the edge off (no routes, no endpoint_url).
FLEET_BASE_DOMAIN = env.str("FLEET_BASE_DOMAIN", default="localhost")
FLEET_EDGE_ADMIN_URL = env.str("FLEET_EDGE_ADMIN_URL", default="http://127.0.0.1:2019")
FLEET_EDGE_LISTEN = env.str("FLEET_EDGE_LISTEN", default="127.0.0.1:8443")
FLEET_EDGE_HTTP_PORT = env.int("FLEET_EDGE_HTTP_PORT", default=8080)
FLEET_EDGE_PUBLIC_PORT = env.int("FLEET_EDGE_PUBLIC_PORT", default=8443)
FLEET_EDGE_TLS = env.str("FLEET_EDGE_TLS", default="internal")
FLEET_EDGE_ASK_URL = env.str("FLEET_EDGE_ASK_URL", default="")
FLEET_EDGE_ACME_EMAIL = env.str("FLEET_EDGE_ACME_EMAIL", default="")
if FLEET_EDGE_TLS not in ("internal", "acme"):
    raise SystemExit("FLEET_EDGE_TLS must be internal or acme")
# A one-time Control UI sign-in link is valid this long (OpenClaw's own bootstrap link: ~10 min).
FLEET_SIGN_IN_LINK_SECONDS = env.int("FLEET_SIGN_IN_LINK_SECONDS", default=300)
# The OpenAI-compatible endpoint a demo instance talks to when no key is given (the mock LLM).
FLEET_DEMO_LLM_URL = env.str("FLEET_DEMO_LLM_URL", default="")
# `make run`'s demo staff login (bootstrap_demo): empty picks a fresh password each run.
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="")

# --- Stripe ---------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="sk_test_clawfleet_dev")
STRIPE_WEBHOOK_SECRET = _secret("STRIPE_WEBHOOK_SECRET", "whsec_clawfleet_dev")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # e.g. localstripe on loopback
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)
# After a subscription ends (or a downgrade leaves too many instances): days of notice before
# its instances are backed up and paused (billing/services/enforcement.py).
BILLING_END_NOTICE_DAYS = env.int("BILLING_END_NOTICE_DAYS", default=3)
# The Stripe meter that receives LLM usage beyond a plan's included credit (in cents).
STRIPE_LLM_METER_EVENT = env.str("STRIPE_LLM_METER_EVENT", default="clawfleet_llm_overage_cents")


# --- Required in production ------------------------------------------------------------------
# With DEBUG off the process refuses to start on a missing secret, a development value, or a key
# that is not a Fernet key, and says which variable to set (an exit, not a traceback).
def _production_problems() -> list[str]:
    from cryptography.fernet import Fernet

    problems = [f"{name} is not set" for name in _MISSING]
    weak = SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5
    if SECRET_KEY and weak:
        problems.append("SECRET_KEY must be your own: at least 50 random characters")
    derived = {_dev_fernet_key(""), _dev_fernet_key("clawfleet-backups:")}
    for name, keys in (
        ("FIELD_ENCRYPTION_KEYS", FIELD_ENCRYPTION_KEYS),
        ("BACKUP_ENCRYPTION_KEY", BACKUP_ENCRYPTION_KEYS),
    ):
        if name in _MISSING:
            continue
        for n, key in enumerate(keys, 1):
            try:
                Fernet(key.encode())
            except ValueError:
                problems.append(f"{name}: key {n} is not a Fernet key (32 url-safe base64 bytes)")
        if derived & set(keys):
            problems.append(f"{name} must not be derived from SECRET_KEY")
    if set(FIELD_ENCRYPTION_KEYS) & set(BACKUP_ENCRYPTION_KEYS):
        problems.append("BACKUP_ENCRYPTION_KEY must differ from every FIELD_ENCRYPTION_KEYS key")
    if not FLEET_BACKUP_S3_BUCKET and not FLEET_BACKUP_LOCAL_IN_PRODUCTION:
        problems.append(
            "FLEET_BACKUP_S3_BUCKET is not set: production backups go to object storage, off this "
            "machine (FLEET_BACKUP_LOCAL_IN_PRODUCTION=true keeps them on this disk, where a "
            "lost disk loses them)"
        )
    return problems


if not DEBUG and (_problems := _production_problems()):
    raise SystemExit(
        "Clawfleet will not start with DEBUG off: "
        + "; ".join(_problems)
        + ". Set them in the environment (README.md, Configuration), or DEBUG=true to develop."
    )

# --- Security when DEBUG is off (check --deploy clean) ---------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- egress firewall (instances/egress.py, docs/security.md) --------------------------------
# Endpoints tenant containers may reach although the firewall refuses their range (the engine
# host, private networks): "host:port", "cidr:port", "[v6]:port", ports as "lo-hi", and
# "gateway:port" (the instances' network gateway, where `make run` serves the mock LLM) or
# "host-gateway:port" (host.docker.internal in a container). With DEBUG on the mock LLM's port
# (MOCKLLM_PORT, 18900) is allowed on both by default; production allows nothing unless listed.
FLEET_EGRESS_ALLOW = env.list(
    "FLEET_EGRESS_ALLOW",
    default=(
        [f"gateway:{env.int('MOCKLLM_PORT', default=18900)}"]
        + [f"host-gateway:{env.int('MOCKLLM_PORT', default=18900)}"]
        if DEBUG
        else []
    ),
)

# --- chat channels (channels/, docs/channels.md)
# Each provider's API root, used by the control plane's token check (channels/providers/). The
# tests point them at local stand-ins; production keeps the providers' own addresses.
FLEET_TELEGRAM_API_ROOT = env.str("FLEET_TELEGRAM_API_ROOT", default="https://api.telegram.org")
FLEET_DISCORD_API_ROOT = env.str("FLEET_DISCORD_API_ROOT", default="https://discord.com/api/v10")
FLEET_SLACK_API_ROOT = env.str("FLEET_SLACK_API_ROOT", default="https://slack.com/api")
# The Bot API root written into an instance's openclaw.json (channels.telegram.apiRoot): empty
# leaves OpenClaw's default (api.telegram.org); a self-hosted Bot API server, or the tests' peer.
FLEET_TELEGRAM_INSTANCE_API_ROOT = env.str("FLEET_TELEGRAM_INSTANCE_API_ROOT", default="")
FLEET_CHANNEL_CHECK_TIMEOUT = env.float("FLEET_CHANNEL_CHECK_TIMEOUT", default=10.0)
# How often the channels' health is read from OpenClaw (channels.status), in seconds.
FLEET_CHANNEL_HEALTH_SECONDS = env.float("FLEET_CHANNEL_HEALTH_SECONDS", default=30.0)

# --- gateway calls from the web tier (instances/gateway_calls.py)
# A transcript read or a log tail waits on a tenant's own process: bounded per organization,
# short, and size-capped, so that one tenant cannot stall the web workers of everyone else.
FLEET_GATEWAY_CALLS_PER_ORG = env.int("FLEET_GATEWAY_CALLS_PER_ORG", default=2)
FLEET_GATEWAY_WEB_TIMEOUT = env.float("FLEET_GATEWAY_WEB_TIMEOUT", default=10.0)
FLEET_GATEWAY_MAX_OUTPUT = env.int("FLEET_GATEWAY_MAX_OUTPUT", default=1_000_000)
# Every command the control plane runs in a tenant's container (the OpenClaw CLI) reads at most
# this much of its output; a backup archive streamed out of it at most FLEET_BACKUP_MAX_BYTES.
FLEET_EXEC_MAX_OUTPUT = env.int("FLEET_EXEC_MAX_OUTPUT", default=16 * 1024 * 1024)
FLEET_BACKUP_MAX_BYTES = env.int("FLEET_BACKUP_MAX_BYTES", default=5 * 1024**3)
# Resolve a custom model endpoint's host name at deploy to check it against the egress policy.
# The test suite turns it off (names are then judged by the firewall at connect time), so that
# no test sends a DNS query for a made-up name.
FLEET_EGRESS_RESOLVE_NAMES = env.bool("FLEET_EGRESS_RESOLVE_NAMES", default=True)

# --- staff door (fleet/admin.py, docs/admin.md) ---------------------------------------------
# /admin/ signs in through allauth (its rate limits and MFA apply) and a staff member must have
# enrolled an authenticator app (TOTP) and used it in this session before any admin page renders.
# Only a development machine (DEBUG on) may turn the TOTP requirement off.
FLEET_STAFF_MFA_REQUIRED = env.bool("FLEET_STAFF_MFA_REQUIRED", default=True)
if not FLEET_STAFF_MFA_REQUIRED and not DEBUG:
    raise SystemExit(
        "Clawfleet will not start with DEBUG off and FLEET_STAFF_MFA_REQUIRED=false: staff must "
        "use TOTP in production. Remove FLEET_STAFF_MFA_REQUIRED, or DEBUG=true to develop."
    )

# --- outgoing webhooks and notification emails (notifications/, docs/notifications.md) -------
# Webhook URLs follow the egress rule of custom model endpoints (no private, loopback or
# reserved address unless FLEET_EGRESS_ALLOW lists it); development and the tests may allow a
# receiver on this machine's loopback.
WEBHOOK_ALLOW_LOOPBACK = env.bool("WEBHOOK_ALLOW_LOOPBACK", default=DEBUG)
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=3.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=10.0)
# Exponential back-off: base × 2^(tries-1) seconds, capped, for at least WEBHOOK_RETRY_HOURS;
# waits up to WEBHOOK_QUEUE_RETRY_SECONDS are queued at once, longer ones by the minute sweeper.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=4 * 3600.0)
WEBHOOK_RETRY_HOURS = env.float("WEBHOOK_RETRY_HOURS", default=24.0)
WEBHOOK_QUEUE_RETRY_SECONDS = env.float("WEBHOOK_QUEUE_RETRY_SECONDS", default=300.0)
WEBHOOK_DISABLE_AFTER_DAYS = env.int("WEBHOOK_DISABLE_AFTER_DAYS", default=3)
