from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection

from outbox.api import enqueue
from outbox.dispatch import Dispatcher, RunReport
from outbox.models import OutboxMessage
from tests.smtp_servers import ScriptedSMTPServer, SinkServer


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" in engine:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL; this run uses " + engine)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def outbox_email_backend(settings: Any) -> None:
    """Undo pytest-django's switch to the locmem backend: the outbox is the
    site's real backend, and the tests are about it."""
    settings.EMAIL_BACKEND = "outbox.backends.OutboxBackend"


@pytest.fixture
def sink(settings: Any) -> Iterator[SinkServer]:
    """A working SMTP server on 127.0.0.1, and the site's settings aimed at it."""
    server = SinkServer().start()
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    yield server
    server.stop()


@pytest.fixture
def scripted(settings: Any) -> Iterator[Callable[..., ScriptedSMTPServer]]:
    """Start misbehaving servers; the last one started gets the settings."""
    servers: list[ScriptedSMTPServer] = []

    def start(**options: Any) -> ScriptedSMTPServer:
        server = ScriptedSMTPServer(**options).start()
        servers.append(server)
        settings.EMAIL_HOST = server.host
        settings.EMAIL_PORT = server.port
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_row() -> Callable[..., OutboxMessage]:
    counter = iter(range(1, 1_000_000))

    def make(**overrides: Any) -> OutboxMessage:
        n = next(counter)
        message = EmailMessage(
            subject=overrides.pop("subject", f"Message {n}"),
            body=overrides.pop("body", f"Body of message {n}.\n"),
            from_email=overrides.pop("from_email", "Panacare <no-reply@panacare.test>"),
            to=overrides.pop("to", [f"person{n}@example.test"]),
            **overrides,
        )
        return enqueue(message)

    return make


@pytest.fixture
def dispatch() -> Callable[..., RunReport]:
    """Run one dispatcher pass in-process, the way the command does."""

    def run(**options: Any) -> RunReport:
        return Dispatcher(**options).run_once()

    return run


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"
