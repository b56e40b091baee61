"""Settings, all from environment variables (see .env.example for every knob).

PORTAL_ENV=development (the default) runs on embedded defaults: SQLite and a
filesystem Celery broker in the data folder, a generated SECRET_KEY kept there.
PORTAL_ENV=production refuses to start without SECRET_KEY and turns on the
HTTPS settings.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url

from portal.env import ConfigError, env_bool, env_choice, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_DATA_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

PORTAL_ENV = env_choice("PORTAL_ENV", "development", ("development", "production"))
PRODUCTION = PORTAL_ENV == "production"
DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if len(key) < 50:
            raise ConfigError("SECRET_KEY must be at least 50 characters long")
        return key
    if PRODUCTION:
        raise ConfigError("SECRET_KEY must be set when PORTAL_ENV=production")
    # Embedded default: generate once, keep it in the data folder.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()
# Keys for portal-link tokens and audit digests. They live outside the database,
# so a copy of the database alone yields neither working links nor forgeable seals.
LINK_TOKEN_KEY = env_str("LINK_TOKEN_KEY") or f"link-token:{SECRET_KEY}"
AUDIT_HMAC_KEY = env_str("AUDIT_HMAC_KEY") or f"audit-digest:{SECRET_KEY}"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PORTAL_BASE_URL = (env_str("PORTAL_BASE_URL", "") or "").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "shares",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "shares.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "shares.audit.AuditContextMiddleware",  # audit: lets admin-change signals name the admin
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "shares.middleware.UserTimezoneMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "shares.context_processors.portal",
            ],
        },
    },
]


def _database() -> dict:
    url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
    try:
        config = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))
    except Exception:  # dj-database-url raises several types for a malformed URL
        raise ConfigError("DATABASE_URL is malformed; expected e.g. postgres://user:pass@host:5432/name") from None
    engine = config.get("ENGINE", "")
    if not engine or not config.get("NAME"):
        raise ConfigError("DATABASE_URL is malformed; expected e.g. postgres://user:pass@host:5432/name")
    # The portal is tested on these two only; anything else would fail later
    # with a driver traceback.
    if not engine.endswith(("sqlite3", "postgresql")):
        raise ConfigError("DATABASE_URL must be a postgres:// or sqlite:/// URL")
    if engine.endswith("postgresql"):
        # psycopg prepares a statement once it has run `prepare_threshold` times on
        # a connection; Django turns that off (None) for connection poolers. The
        # portal asks for it explicitly for its few hot statements only
        # (shares/fastsql.py), so nothing else is ever prepared: a threshold no
        # query reaches. Behind PgBouncer < 1.21 in transaction mode, set
        # DB_PREPARED_STATEMENTS=false.
        config.setdefault("OPTIONS", {})["prepare_threshold"] = (
            2**31 - 1 if env_bool("DB_PREPARED_STATEMENTS", True) else None)
    if engine.endswith("sqlite3"):
        # Web server and Celery worker share the file: wait for locks instead of
        # failing, and take the write lock up front so transactions don't deadlock.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# --- accounts (django-allauth) ----------------------------------------------
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_choice("ACCOUNT_EMAIL_VERIFICATION", "none", ("none", "optional", "mandatory"))
ACCOUNT_ADAPTER = "shares.accounts.PortalAccountAdapter"
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
# A staff portal: admins create accounts. SIGNUP_EMAIL_DOMAINS opens sign-up
# to addresses in those domains only.
SIGNUP_ENABLED = env_bool("SIGNUP_ENABLED", False)
SIGNUP_EMAIL_DOMAINS = [d.lower().lstrip("@") for d in env_list("SIGNUP_EMAIL_DOMAINS", [])]
if SIGNUP_ENABLED and not SIGNUP_EMAIL_DOMAINS:
    raise ConfigError("SIGNUP_EMAIL_DOMAINS must list at least one domain when SIGNUP_ENABLED is on")

# --- email (password reset) -------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "s3-share-portal@localhost")

# --- i18n -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
try:
    import zoneinfo

    zoneinfo.ZoneInfo(TIME_ZONE)
except Exception:
    raise ConfigError(f"TIME_ZONE={TIME_ZONE!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
USE_I18N = True
USE_TZ = True

# --- static files (served by the portal itself, never a CDN) -----------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- security ---------------------------------------------------------------
# Never send a Referer to another origin (a page may carry a signed URL). Not
# "no-referrer": Chromium then sends "Origin: null" with form POSTs and CSRF fails.
# The /s/ redirects themselves answer with no-referrer.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Where the client IP comes from: REMOTE_ADDR, or the last hop of
# X-Forwarded-For when a trusted proxy sets it.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)

# --- Celery -----------------------------------------------------------------
CELERY_QUEUE_DIR = VAR_DIR / "celery" / "queue"
CELERY_PROCESSED_DIR = VAR_DIR / "celery" / "processed"
CELERY_RESULTS_DIR = VAR_DIR / "celery" / "results"
CELERY_CONTROL_DIR = VAR_DIR / "celery" / "control"  # else kombu writes ./control in the working directory
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if not CELERY_BROKER_URL.split("://", 1)[0] in ("filesystem", "redis", "rediss", "amqp", "amqps", "pyamqp"):
    raise ConfigError("CELERY_BROKER_URL must start with filesystem://, redis://, rediss:// or amqp://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in (CELERY_QUEUE_DIR, CELERY_PROCESSED_DIR, CELERY_RESULTS_DIR, CELERY_CONTROL_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR),
        "data_folder_out": str(CELERY_QUEUE_DIR),
        "processed_folder": str(CELERY_PROCESSED_DIR),
        "store_processed": False,
        "control_folder": str(CELERY_CONTROL_DIR),
    }
    _default_results = f"file://{CELERY_RESULTS_DIR}"
elif CELERY_BROKER_URL.startswith("redis"):
    # Tasks must finish (or be killed by their time limit) well inside this.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    _default_results = CELERY_BROKER_URL
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    _default_results = "rpc://"
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", _default_results)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 1800  # below the broker's visibility timeout (3600 s)
CELERY_TASK_SOFT_TIME_LIMIT = 1500
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- the portal -------------------------------------------------------------
PORTAL_DEMO = env_bool("PORTAL_DEMO", True)
# Direct links: a presigned S3 URL, 1..604800 s (S3's own cap).
DIRECT_LINK_DEFAULT_EXPIRY = env_int("DIRECT_LINK_DEFAULT_EXPIRY", 3600, minimum=1, maximum=604800)
# Portal links may outlive 7 days, up to the grant's maximum; this is the cap.
PORTAL_LINK_MAX_EXPIRY = env_int("PORTAL_LINK_MAX_EXPIRY", 30 * 86400, minimum=1)
# A portal-link visit redirects to a fresh presigned URL valid this long.
PORTAL_LINK_REDIRECT_EXPIRY = env_int("PORTAL_LINK_REDIRECT_EXPIRY", 60, minimum=1, maximum=604800)
PORTAL_LINK_RATE_LIMIT = env_int("PORTAL_LINK_RATE_LIMIT", 60, minimum=1)  # visits per minute per IP
BROWSE_PAGE_SIZE = env_int("BROWSE_PAGE_SIZE", 100, minimum=1, maximum=1000)
S3_CONNECT_TIMEOUT = env_int("S3_CONNECT_TIMEOUT", 5, minimum=1)
S3_READ_TIMEOUT = env_int("S3_READ_TIMEOUT", 20, minimum=1)
S3_MAX_ATTEMPTS = env_int("S3_MAX_ATTEMPTS", 2, minimum=1, maximum=10)
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365, minimum=0)
SHARE_RETENTION_DAYS = env_int("SHARE_RETENTION_DAYS", 90, minimum=0)
AUDIT_SEAL_PERIOD_MINUTES = env_int("AUDIT_SEAL_PERIOD_MINUTES", 60, minimum=1)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "portal_cache",
    }
}
if env_str("CACHE_URL"):
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env_str("CACHE_URL")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A portal link's path is its token: /s/<token> becomes /s/[redacted] in any
    # line Django writes about a request (404, 405, CSRF refusal, runserver access).
    "filters": {"redact_link_tokens": {"()": "shares.logging.RedactLinkTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["redact_link_tokens"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        # Logger filters run before any handler (test capture, mail_admins) sees the record.
        "django.request": {"filters": ["redact_link_tokens"]},
        "django.security.csrf": {"filters": ["redact_link_tokens"]},
        # runserver's access log: through the console handler (and its filter) too.
        "django.server": {"handlers": ["console"], "filters": ["redact_link_tokens"], "propagate": False},
        # botocore at DEBUG prints signed URLs and credentials: never below WARNING.
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
