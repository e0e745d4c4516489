"""Site-wide views that belong to no app."""

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the database answers, 503 when it does not; cheap enough to poll."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("healthz.database_unreachable")
        return HttpResponse(
            "database unreachable\n", status=503, content_type="text/plain"
        )
    return HttpResponse("ok\n", content_type="text/plain")
