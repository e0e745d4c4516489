"""Settings for the test suite: the site's own, with test defaults.

DATABASE_URL chooses the database (PostgreSQL unless told otherwise); the test
runner creates and drops its own ``test_`` database there.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panacare")

from panacare.settings import *  # noqa: F403

ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests aim every SMTP connection at servers they start on 127.0.0.1.
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = 9  # discard port: a test that forgets to set one fails fast
EMAIL_TIMEOUT = 2.0
OUTBOX_SEND_DEADLINE = 5.0
OUTBOX_RETRY_BASE = 60.0
