"""One retry on a fresh database connection, for the dispatcher's writes."""

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")


def with_reconnect(action: Callable[[], T]) -> T:
    """Run a database step; if the connection died, reconnect once and retry.

    An outcome that cannot be written leaves its row claimed until the lease
    ends, and the message is then sent again; a restarted database or a
    killed session is worth one new connection first. The writes are
    conditional on the claim, so repeating one that did land changes nothing.
    """
    try:
        return action()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise  # inside a caller's transaction nothing can be recovered
        logger.warning("outbox.database_reconnect")
        connection.close()
        return action()
