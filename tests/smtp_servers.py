"""Real SMTP servers on 127.0.0.1 for the tests: one that works, and small ones
that misbehave on purpose (silent, dripping, scripted replies, hanging or
closing mid-conversation).

Every server listens on a fresh loopback port and stops when its test ends.
"""

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AioSMTP
from aiosmtpd.smtp import Envelope as AioEnvelope
from aiosmtpd.smtp import Session as AioSession


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Received:
    """One message as the server got it."""

    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class Mailbox:
    """Messages received so far, with a way to wait for more without sleeping."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self._changed = threading.Condition()

    def add(self, item: Received) -> None:
        with self._changed:
            self.messages.append(item)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._changed:
            if not self._changed.wait_for(
                lambda: len(self.messages) >= count, timeout=timeout
            ):
                raise AssertionError(
                    f"expected {count} messages, got {len(self.messages)}"
                )
            return list(self.messages)

    def clear(self) -> None:
        with self._changed:
            self.messages.clear()

    def __len__(self) -> int:
        return len(self.messages)


class _SinkHandler:
    def __init__(self, mailbox: Mailbox, delay: float) -> None:
        self.mailbox = mailbox
        self.delay = delay
        self.connections = 0

    async def handle_DATA(
        self, server: AioSMTP, session: AioSession, envelope: AioEnvelope
    ) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.original_content or b""
        self.mailbox.add(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), data)
        )
        return "250 Message accepted for delivery"


class _CountingSMTP(AioSMTP):
    def connection_made(self, transport: Any) -> None:
        self.event_handler.connections += 1
        super().connection_made(transport)


class _CountingController(Controller):
    def factory(self) -> AioSMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


class SinkServer:
    """aiosmtpd on 127.0.0.1 that keeps every message; ``delay`` per message."""

    def __init__(self, delay: float = 0.0) -> None:
        self.mailbox = Mailbox()
        self.handler = _SinkHandler(self.mailbox, delay)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._controller = _CountingController(
            self.handler, hostname=self.host, port=self.port
        )

    @property
    def connections(self) -> int:
        return self.handler.connections

    def start(self) -> "SinkServer":
        self._controller.start()
        # start() makes one connection of its own to see the server is up.
        self.handler.connections = 0
        return self

    def stop(self) -> None:
        self._controller.stop()


# Markers a scripted reply can be instead of text.
HANG = "<hang>"
"""Never answer; after a reply, say nothing more once it is sent."""
CLOSE = "<close>"
"""Close the connection without a word; after a reply, close once it is sent."""

Reply = str | Callable[["ScriptedSession", str], str]


@dataclass
class ScriptedSession:
    index: int
    """1 for the first connection the server accepted, 2 for the next..."""
    messages: int = 0
    """Messages whose end of DATA this session has reached."""


DEFAULT_REPLIES: dict[str, Reply] = {
    "GREETING": "220 scripted.test ESMTP",
    "EHLO": "250-scripted.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME",
    "HELO": "250 scripted.test",
    "AUTH": "235 2.7.0 Authentication successful",
    "MAIL": "250 2.1.0 OK",
    "RCPT": "250 2.1.5 OK",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    "END": "250 2.0.0 queued",
    "RSET": "250 2.0.0 OK",
    "NOOP": "250 2.0.0 OK",
    "QUIT": "221 2.0.0 Bye",
}


@dataclass
class ScriptedSMTPServer:
    """A plain-socket SMTP server whose every answer a test can script.

    ``replies`` maps a verb (and GREETING, END for the end of DATA) to a reply,
    HANG, CLOSE, a reply followed by CLOSE, or a function of the session and
    the command line that returns one of those. ``after_reply`` is called with
    each reply once it has been sent. ``drip``
    sends every reply one byte at a time at that interval. ``end_delay`` waits
    before answering the end of DATA. ``silent`` never sends a greeting.
    """

    replies: dict[str, Reply] = field(default_factory=dict)
    drip: float | None = None
    end_delay: float = 0.0
    silent: bool = False
    close_in_data: bool = False
    after_reply: Callable[[str], None] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    closed_by_client: int = 0
    commands: list[str] = field(default_factory=list)
    mailbox: Mailbox = field(default_factory=Mailbox)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> "ScriptedSMTPServer":
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            # Wakes the accept() blocked in the other thread; close() alone
            # does not on Linux.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                session = ScriptedSession(index=self.connections)
                self._sockets.append(conn)
            worker = threading.Thread(
                target=self._serve, args=(conn, session), daemon=True
            )
            worker.start()
            self._threads.append(worker)

    def _reply_for(self, key: str, session: ScriptedSession, line: str) -> str:
        reply = self.replies.get(key, DEFAULT_REPLIES.get(key, "250 OK"))
        return reply(session, line) if callable(reply) else reply

    def _serve(self, conn: socket.socket, session: ScriptedSession) -> None:
        reader = conn.makefile("rb")
        try:
            if self.silent:
                self._wait_for_client_close(reader)
                return
            if not self._answer(conn, self._reply_for("GREETING", session, "")):
                return
            while not self._stop.is_set():
                raw = reader.readline()
                if not raw:
                    self.closed_by_client += 1
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append(line)
                verb = line.split(" ", 1)[0].upper()
                if verb == "DATA":
                    if not self._data(conn, reader, session, line):
                        return
                    continue
                if not self._answer(conn, self._reply_for(verb, session, line)):
                    return
                if verb == "QUIT":
                    return
        except OSError:
            return
        finally:
            reader.close()
            conn.close()

    def _data(
        self, conn: socket.socket, reader: Any, session: ScriptedSession, line: str
    ) -> bool:
        reply = self._reply_for("DATA", session, line)
        if not self._answer(conn, reply):
            return False
        if not reply.startswith("354"):
            return True
        if self.close_in_data:
            reader.readline()
            return False
        chunks = []
        while True:
            raw = reader.readline()
            if not raw:
                return False
            if raw == b".\r\n":
                break
            chunks.append(raw[1:] if raw.startswith(b"..") else raw)
        session.messages += 1
        self.mailbox.add(Received("", [], b"".join(chunks)))
        if self.end_delay and self._stop.wait(self.end_delay):
            return False
        return self._answer(conn, self._reply_for("END", session, ""))

    def _answer(self, conn: socket.socket, reply: str) -> bool:
        """Send ``reply``; False when the conversation is over."""
        if reply == HANG:
            self._stop.wait()
            return False
        if reply == CLOSE:
            return False
        close_after = reply.endswith(CLOSE)
        hang_after = reply.endswith(HANG)
        reply = reply.removesuffix(CLOSE).removesuffix(HANG)
        payload = (reply + "\r\n").encode()
        if self.drip is None:
            conn.sendall(payload)
        else:
            for byte in payload:
                if self._stop.wait(self.drip):
                    return False
                conn.sendall(bytes([byte]))
        if self.after_reply is not None:
            self.after_reply(reply)
        if hang_after:
            self._stop.wait()
            return False
        return not close_after

    def _wait_for_client_close(self, reader: Any) -> None:
        while not self._stop.is_set():
            if not reader.readline():
                self.closed_by_client += 1
                return


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition another process or thread makes true."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
