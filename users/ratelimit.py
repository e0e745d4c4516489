"""Per-client request limits on Django's cache.

A fixed window per client address: the first request of a window adds the
counter, the rest increment it. Backends with atomic increments (Redis,
memcached, the local-memory cache within one process) count exactly; others
may let a few extra requests through under a race, never block too many.
"""

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from users.rates import parse_rate


def allow(scope: str, client: str, rate: str) -> bool:
    """Count one request of ``client`` in ``scope``; False once over ``rate``."""
    limit = parse_rate(rate)
    if limit is None:
        return True
    count, period = limit
    window = int(time.time() // period)
    key = f"ratelimit:{scope}:{client}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add() and incr()
        cache.set(key, 1, timeout=period + 1)
        used = 1
    return used <= count


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the header a trusted proxy sets.

    Behind nginx every request comes from the proxy; CLIENT_IP_HEADER names
    the header nginx fills in (deploy/nginx.conf.example sets X-Real-IP and
    overwrites any value a client sent).
    """
    header = settings.CLIENT_IP_HEADER
    if header:
        meta_key = "HTTP_" + header.upper().replace("-", "_")
        forwarded = str(request.META.get(meta_key, "")).strip()
        if forwarded:
            return forwarded
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def limit_posts(
    scope: str, setting: str, refuse: Callable[[HttpRequest], HttpResponse]
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Limit POSTs to a view by client address, with the rate read at call time."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                client = client_address(request)
                if not allow(scope, client, getattr(settings, setting)):
                    return refuse(request)
            return view(request, *args, **kwargs)

        return limited

    return decorate
