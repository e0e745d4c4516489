"""Settings for the Panacare site, read from the environment and an optional file.

Every value an operator may change is named in README.md and deploy/env.example.
The environment file is found by an absolute path, so cron's bare environment
finds the same configuration as an interactive shell.
"""

import logging
import math
import os
import shlex
import zoneinfo
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from users.rates import InvalidRate, parse_rate

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# An explicit PANACARE_ENV_FILE must exist; the default one is optional.
_env_file = os.environ.get("PANACARE_ENV_FILE")
if _env_file:
    if not Path(_env_file).is_file():
        raise ImproperlyConfigured(
            f"PANACARE_ENV_FILE names {_env_file}, which is not a readable file."
        )
    env.read_env(_env_file)
elif (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")


def _bool(name: str, default: bool) -> bool:
    """Read a yes/no setting; anything but the usual spellings is an error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a yes/no value (use 1 or 0)")


def _number(
    name: str, default: float, cast: type = float, minimum: float | None = None
) -> float:
    """Read a finite number; a typo stops start-up with one line."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value: float = cast(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a valid {cast.__name__}"
        ) from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name}={raw!r} must be a finite number")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _int(name: str, default: int, minimum: int | None = None) -> int:
    return int(_number(name, default, int, minimum))


def _rate(name: str, default: str) -> str:
    """Read a request rate such as 10/h; empty turns the limit off."""
    value = str(env.str(name, default=default))
    try:
        parse_rate(value)
    except InvalidRate as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return value


DEBUG = _bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set (and DEBUG is off): set it in the environment "
            "or in the file named by PANACARE_ENV_FILE."
        )
    SECRET_KEY = "django-insecure-development-only-key"
# Old keys stay valid for links already sent while a new key is rolled out.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_crontab",
    "outbox",
    "users",
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
]

ROOT_URLCONF = "panacare.urls"
WSGI_APPLICATION = "panacare.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "panacare" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so the web
    # process and a dispatcher queue up instead of failing with "database is
    # locked" when both read first and then write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# Seconds an activation link stays valid.
ACTIVATION_TIMEOUT = _int("ACTIVATION_TIMEOUT", default=3 * 24 * 3600, minimum=60)
# At most one activation mail per account in this many seconds.
ACTIVATION_RESEND_INTERVAL = _int(
    "ACTIVATION_RESEND_INTERVAL", default=5 * 60, minimum=0
)
# Requests per client address, as "count/period" with period s, m, h or d
# (such as "10/h"); empty turns the limit off.
SIGNUP_RATE_LIMIT = _rate("SIGNUP_RATE_LIMIT", default="10/h")
RESEND_RATE_LIMIT = _rate("RESEND_RATE_LIMIT", default="5/h")
RESET_RATE_LIMIT = _rate("RESET_RATE_LIMIT", default="5/h")
# At most one password-reset mail per account in this many seconds.
PASSWORD_RESET_INTERVAL = _int("PASSWORD_RESET_INTERVAL", default=5 * 60, minimum=0)
# The request header a trusted reverse proxy puts the client's address in
# (X-Real-IP with deploy/nginx.conf.example); empty uses the socket's address.
# Set it only when the site is reachable through that proxy alone.
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")

# Rate-limit counters live here. The default is per process; with several
# gunicorn workers point CACHE_URL at a shared cache (redis://, or dbcache://
# after manage.py createcachetable) so that the limit holds across them.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"TIME_ZONE={TIME_ZONE!r} is not a known time zone"
    ) from None
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")

# Every send_mail() of the site, password resets and admin error mail included,
# becomes an outbox row; the dispatcher hands it to OUTBOX_TRANSPORT later.
EMAIL_BACKEND = "outbox.backends.OutboxBackend"
OUTBOX_TRANSPORT = env.str(
    "OUTBOX_TRANSPORT", default="outbox.smtp.DeadlineSMTPBackend"
)
EMAIL_HOST = env.str("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = _int("EMAIL_PORT", default=1025)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = _bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = _bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = _number("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default="Panacare <no-reply@panacare.test>"
)
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [("Admin", address) for address in env.list("ADMINS", default=[])]

# Only values that differ from outbox.conf's defaults need to appear here; these
# are read from the environment so the operator's names stay stable.
OUTBOX_SEND_DEADLINE = _number("OUTBOX_SEND_DEADLINE", default=30.0)
OUTBOX_BATCH_SIZE = _int("OUTBOX_BATCH_SIZE", default=20)
OUTBOX_MAX_SECONDS = _number("OUTBOX_MAX_SECONDS", default=50.0)
OUTBOX_LEASE_SECONDS = _number("OUTBOX_LEASE_SECONDS", default=900.0)
OUTBOX_RETRY_BASE = _number("OUTBOX_RETRY_BASE", default=60.0, minimum=0)
OUTBOX_RETRY_CAP = _number("OUTBOX_RETRY_CAP", default=3600.0, minimum=0)
OUTBOX_MAX_ATTEMPTS = _int("OUTBOX_MAX_ATTEMPTS", default=10)
# Messages per minute and per 24 hours, shared by every dispatcher; 0 = none.
OUTBOX_RATE_LIMIT = _int("OUTBOX_RATE_LIMIT", default=0, minimum=0)
OUTBOX_DAILY_LIMIT = _int("OUTBOX_DAILY_LIMIT", default=0, minimum=0)
# Retention: finished rows are deleted after this many days, and the bodies of
# sent mail (personal data, live links) blanked after this many.
OUTBOX_PURGE_AFTER_DAYS = _int("OUTBOX_PURGE_AFTER_DAYS", default=30, minimum=1)
OUTBOX_BLANK_SENT_AFTER_DAYS = _int(
    "OUTBOX_BLANK_SENT_AFTER_DAYS", default=7, minimum=0
)

# The dispatcher every minute; its run budget (OUTBOX_MAX_SECONDS) stays below
# the period so runs rarely overlap, and overlapping runs are safe anyway.
# The purge once a day. `manage.py crontab add` installs both.
CRONJOBS = [
    ("* * * * *", "outbox.cron.send_outbox"),
    ("17 3 * * *", "outbox.cron.purge_outbox"),
]
# Cron starts jobs with an almost empty environment and in the home folder:
# name manage.py and the environment file by absolute paths, and append each
# run's output to a log in a known place.
CRON_LOG_FILE = Path(
    env.str("CRON_LOG_FILE", default=str(BASE_DIR / "var" / "cron.log"))
)
CRONTAB_DJANGO_MANAGE_PATH = str(BASE_DIR / "manage.py")
CRONTAB_COMMAND_PREFIX = " ".join(
    [
        f"mkdir -p {shlex.quote(str(CRON_LOG_FILE.parent))} &&",
        f"PANACARE_ENV_FILE={shlex.quote(_env_file)}" if _env_file else "",
    ]
)
CRONTAB_COMMAND_SUFFIX = f">> {shlex.quote(str(CRON_LOG_FILE))} 2>&1"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if not isinstance(logging.getLevelName(LOG_LEVEL), int):
    raise ImproperlyConfigured(
        f"LOG_LEVEL={LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "line",
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler would print each of its lines twice.
        "django": {"handlers": [], "propagate": True},
    },
}
