"""Django's SMTP backend with a hard wall-clock deadline on every send.

``EMAIL_TIMEOUT`` limits each socket operation; ``OUTBOX_SEND_DEADLINE`` limits
the whole of one message: resolving the host, looking up the local host name,
connecting to each address, TLS, AUTH, and every command and reply. A send cut
off by the deadline leaves no socket behind for the next message to reuse.
"""

import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends import smtp
from django.core.mail.utils import DNS_NAME

from outbox import conf
from outbox.classify import is_reply_code
from outbox.deadline import Deadline
from outbox.emails import Envelope, render
from outbox.exceptions import (
    DeadlineExceeded,
    DeliveryUnconfirmed,
    HandoverBlocked,
    OutboxError,
)

logger = logging.getLogger(__name__)

Refused = dict[str, tuple[int, str]]


@dataclass
class Hooks:
    """Work of the caller's to run while the server is busy with ours.

    Each runs with the deadline's clock stopped, since it waits on something
    other than the server. ``meanwhile`` runs once, after the first command
    goes out; ``before_handover`` after the server's 354, before the message
    is sent (if it raises, the message is not sent and the connection is
    dropped); ``after_handover`` after the message went out, before its reply
    is read, and must not raise.
    """

    meanwhile: Callable[[], None] | None = None
    before_handover: Callable[[], None] | None = None
    after_handover: Callable[[], None] | None = None

    def paused(self, deadline: Deadline) -> "Hooks":
        def pause(hook: Callable[[], None] | None) -> Callable[[], None] | None:
            return None if hook is None else partial(deadline.paused, hook)

        return Hooks(
            pause(self.meanwhile),
            pause(self.before_handover),
            pause(self.after_handover),
        )


class DeadlineSMTP(smtplib.SMTP):
    """An SMTP client whose connect phase answers to a ``Deadline``.

    It also notes whether the whole message went out before an error, since a
    failure after that point means the server may have delivered it.
    """

    def __init__(self, host: str, port: int, *, deadline: Deadline, **kw: Any):
        self.deadline = deadline
        self.server_hostname = host
        self.handed_over = False
        self.hooks = Hooks()
        self._in_data = False
        super().__init__(host, port, **kw)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        infos = self.deadline.call(
            "resolving the SMTP host",
            socket.getaddrinfo,
            host,
            port,
            0,
            socket.SOCK_STREAM,
        )
        error: OSError = OSError(f"no address found for {host}")
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.deadline.timeout(timeout, "connecting"))
                if self.source_address:
                    sock.bind(self.source_address)
                self.deadline.watch(sock)
                sock.connect(address)
            except DeadlineExceeded:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sock.settimeout(timeout)
            return sock
        raise error

    def data(self, msg: Any) -> tuple[int, bytes]:
        # handed_over is reset per message by the backend, before MAIL FROM.
        self._in_data = True
        try:
            return super().data(msg)
        finally:
            self._in_data = False

    def send(self, s: Any) -> None:
        # smtplib sends the message body as bytes ending in CRLF.CRLF; the
        # DATA command itself goes out as a str.
        body = self._in_data and isinstance(s, bytes) and s.endswith(b"\r\n.\r\n")
        hooks = self.hooks
        if body and hooks.before_handover is not None:
            hooks.before_handover()
        super().send(s)
        if body:
            self.handed_over = True
            if hooks.after_handover is not None:
                hooks.after_handover()
        elif hooks.meanwhile is not None:
            work, hooks.meanwhile = hooks.meanwhile, None
            work()


class DeadlineSMTPSSL(DeadlineSMTP):
    """Implicit TLS (port 465), with the handshake inside the deadline."""

    default_port = smtplib.SMTP_SSL_PORT

    def __init__(self, host: str, port: int, *, context: Any, **kw: Any):
        self.context = context
        super().__init__(host, port, **kw)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)
        wrapped: socket.socket = self.context.wrap_socket(
            sock, server_hostname=self.server_hostname
        )
        return wrapped


class DeadlineSMTPBackend(smtp.EmailBackend):
    """Send through SMTP, never longer than the deadline per message.

    Options are constructor arguments; each left as None falls back to the
    Django or outbox setting of the same meaning.
    """

    connection: DeadlineSMTP | None
    _partial_connection: DeadlineSMTP | None
    ssl_context: ssl.SSLContext  # a cached_property of Django's backend

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        deadline: float | None = None,
        local_hostname: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            username=username,
            password=password,
            use_tls=use_tls,
            fail_silently=fail_silently,
            use_ssl=use_ssl,
            timeout=timeout,
            ssl_keyfile=ssl_keyfile,
            ssl_certfile=ssl_certfile,
            **kwargs,
        )
        if deadline is None:
            deadline = conf.get("OUTBOX_SEND_DEADLINE")
        self.deadline = float(deadline)
        self.local_hostname = local_hostname
        self._current: Deadline | None = None
        self._stage = "idle"

    # Connection handling.

    def open(self) -> bool | None:
        """Connect and authenticate unless connected; return True if it did."""
        if self.connection:
            return False
        if self._current is not None:
            return self._open(self._current)
        with Deadline(self.deadline) as deadline:
            return self._open(deadline)

    def _open(self, deadline: Deadline) -> bool | None:
        try:
            self._stage = "looking up the local host name"
            local_hostname = self.local_hostname or deadline.call(
                self._stage, DNS_NAME.get_fqdn
            )
            self._stage = "connecting"
            params: dict[str, Any] = {
                "local_hostname": local_hostname,
                "timeout": self.timeout,
                "deadline": deadline,
            }
            if self.use_ssl:
                params["context"] = self.ssl_context
            klass = DeadlineSMTPSSL if self.use_ssl else DeadlineSMTP
            self._partial_connection = klass(self.host, self.port, **params)
            deadline.watch(self._partial_connection.sock)
            if not self.use_ssl and self.use_tls:
                self._stage = "starting TLS"
                self._partial_connection.starttls(context=self.ssl_context)
                deadline.watch(self._partial_connection.sock)
            if self.username and self.password:
                self._stage = "authenticating"
                self._partial_connection.login(self.username, self.password)
        except (OSError, smtplib.SMTPException) as exc:
            self._discard()
            if self.fail_silently:
                return None
            error = self._deadline_error(deadline, exc)
            if error is exc:
                raise
            raise error from exc
        self.connection = self._partial_connection
        self._partial_connection = None
        return True

    def close(self) -> None:
        """Say QUIT politely, but never wait on it past the deadline."""
        if self.connection is None and self._partial_connection is None:
            return
        with Deadline(self.deadline) as deadline:
            if self.connection is not None:
                deadline.watch(self.connection.sock)
            try:
                super().close()
            except (OSError, smtplib.SMTPException):
                self._discard()

    def _discard(self) -> None:
        """Drop the connection without a word: it is broken or out of time."""
        for connection in (self._partial_connection, self.connection):
            if connection is not None:
                connection.close()
        self._partial_connection = None
        self.connection = None

    # Sending.

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        opened_here = self.connection is None
        sent = 0
        try:
            for message in email_messages:
                if not message.recipients():
                    continue
                try:
                    self.deliver(render(message))
                except (OSError, smtplib.SMTPException, OutboxError):
                    if not self.fail_silently:
                        raise
                    continue
                sent += 1
        finally:
            if opened_here:
                self.close()
        return sent

    def deliver(
        self,
        envelope: Envelope,
        hooks: Hooks | None = None,
    ) -> Refused:
        """Send one rendered message; return the recipients the server refused.

        Raise what smtplib raises for a refusal, ``DeadlineExceeded`` when the
        deadline cut the send off, and ``DeliveryUnconfirmed`` when the server
        took the whole message but no reply to it came.

        ``hooks`` run the caller's own work in the server's think time.
        """
        with self._lock, Deadline(self.deadline) as deadline:
            self._current = deadline
            try:
                return self._deliver(envelope, deadline, hooks or Hooks())
            finally:
                self._current = None
                self._stage = "idle"
                if self.connection is not None:
                    self.connection.hooks = Hooks()

    def _deliver(
        self,
        envelope: Envelope,
        deadline: Deadline,
        hooks: Hooks,
    ) -> Refused:
        # One set for both passes below: ``meanwhile`` must run only once.
        hooks = hooks.paused(deadline)
        # A connection kept from the last message may have been closed by
        # the server while idle; that is worth exactly one reconnect.
        for may_reconnect in (True, False):
            reused = self.open() is False
            connection = self.connection
            assert isinstance(connection, DeadlineSMTP)
            deadline.watch(connection.sock)
            connection.handed_over = False
            connection.hooks = hooks
            self._stage = "sending"
            try:
                refused = connection.sendmail(*envelope)
            except HandoverBlocked:
                self._discard()
                raise
            except (OSError, smtplib.SMTPException) as exc:
                self._failed(exc, connection, deadline, reused and may_reconnect)
                continue
            # Anything else (a hook's own fault) leaves the session somewhere
            # in the middle of a command: it cannot carry the next message.
            except Exception:
                self._discard()
                raise
            return {
                address: (code, reply.decode("utf-8", "replace"))
                for address, (code, reply) in refused.items()
            }
        raise AssertionError("unreachable: the second pass always returns or raises")

    def _failed(
        self,
        exc: OSError | smtplib.SMTPException,
        connection: DeadlineSMTP,
        deadline: Deadline,
        may_reconnect: bool,
    ) -> None:
        """Raise what a failed send means; return only to reconnect once."""
        if _refusal_keeps_connection(exc, connection):
            raise exc
        # Unconfirmed means no answer came; a reply, even 421, is an
        # answer and is classified as such. A line without a reply code
        # (smtplib says -1) is not an answer.
        unanswered = connection.handed_over and not _is_reply(exc)
        self._discard()
        if unanswered:
            raise DeliveryUnconfirmed(exc) from exc
        error = self._deadline_error(deadline, exc)
        if error is not exc:
            raise error from exc
        # smtplib reports a read that timed out as a disconnect too; a
        # server that stopped answering is not one that hung up.
        if (
            may_reconnect
            and isinstance(exc, smtplib.SMTPServerDisconnected)
            and not isinstance(exc.__context__, TimeoutError)
        ):
            logger.info("outbox.smtp.reconnect reason=idle-disconnect")
            return
        raise exc

    def _deadline_error(self, deadline: Deadline, exc: BaseException) -> BaseException:
        if isinstance(exc, DeadlineExceeded):
            return exc
        if deadline.expired:
            return DeadlineExceeded(self.deadline, self._stage)
        return exc


def _is_reply(exc: BaseException) -> bool:
    return isinstance(exc, smtplib.SMTPResponseException) and is_reply_code(
        exc.smtp_code
    )


def _refusal_keeps_connection(exc: BaseException, connection: smtplib.SMTP) -> bool:
    """Whether smtplib reset the session after a refusal and kept it open."""
    refusal = (
        smtplib.SMTPRecipientsRefused,
        smtplib.SMTPSenderRefused,
        smtplib.SMTPDataError,
    )
    if isinstance(exc, smtplib.SMTPResponseException) and not _is_reply(exc):
        return False  # a line without a code is no refusal: drop the server
    return isinstance(exc, refusal) and connection.sock is not None
