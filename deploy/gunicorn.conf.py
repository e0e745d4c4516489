"""gunicorn settings for the site; every value can come from the environment.

Start with: gunicorn -c deploy/gunicorn.conf.py panacare.wsgi
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
# Requests never wait on SMTP (mail goes through the outbox), so the timeout
# only has to cover the database and password hashing.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
wsgi_app = "panacare.wsgi:application"
