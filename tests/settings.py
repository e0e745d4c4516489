"""Settings for the test suite: the site's own, with test defaults.

DATABASE_URL chooses the database (PostgreSQL unless told otherwise); the test
runner creates and drops its own ``test_`` database there.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panacare")

from panacare.settings import *  # noqa: F403

ALLOWED_HOSTS = ["*"]
# whitenoise serves STATIC_ROOT and warns when it does not exist.
STATIC_ROOT = BASE_DIR / "var" / "test-static"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests aim every SMTP connection at servers they start on 127.0.0.1.
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = 9  # discard port: a test that forgets to set one fails fast
EMAIL_TIMEOUT = 2.0
OUTBOX_SEND_DEADLINE = 5.0
OUTBOX_RETRY_BASE = 60.0
# Limits off, except in the tests about them, which set their own.
SIGNUP_RATE_LIMIT = ""
RESEND_RATE_LIMIT = ""
RESET_RATE_LIMIT = ""
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's shared in-memory database: threads (the live
    # server, races) then get connections of their own, as in production.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / "var" / "test-db.sqlite3")  # noqa: F405
    }
