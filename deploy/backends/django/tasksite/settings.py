"""Settings for a token-only JSON API that sits behind Portcullis.

The gateway authenticates every request and sets X-User-Id; Django never sees a
password, a session or a cookie, so the auth, session and CSRF machinery is left out.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# No sessions or signed cookies are used; a secret is still required by Django.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or os.urandom(32).hex()
DEBUG = False

# The gateway forwards the client's Host header unchanged: list the public host names
# clients use to reach the gateway (comma-separated), not the backend's own address.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

# The gateway overwrites X-Forwarded-Proto on every request, so Django may trust it to
# tell whether the client used HTTPS. Trust it only because nothing but the gateway can
# reach this process.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = ["tasks"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # No CsrfViewMiddleware: the API is reached with bearer tokens only (the gateway
    # verifies them), never with cookies, so there is no ambient credential to forge.
    "tasks.stats.RequestLogMiddleware",
    "tasks.middleware.GatewayUserMiddleware",
]

ROOT_URLCONF = "tasksite.urls"
WSGI_APPLICATION = "tasksite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TASKS_DB", str(BASE_DIR / "tasks.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APPEND_SLASH = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
