"""A hard wall-clock limit over one SMTP send.

A socket timeout bounds each read or write on its own, so a server that drips
one byte at a time resets it forever. A ``Deadline`` bounds the whole send:
when it passes, a watchdog thread shuts the watched socket down, which wakes
any read or write blocked on it, plain or TLS. Calls that no socket shutdown
can wake (name lookups) run in a helper thread that is abandoned when time is
up.
"""

import math
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from outbox.exceptions import DeadlineExceeded

T = TypeVar("T")


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def __enter__(self) -> "Deadline":
        _watchdog.arm(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _watchdog.disarm(self)
        with self._lock:
            self._forget()

    def paused(self, wait: Callable[[], T]) -> T:
        """Run ``wait`` with the clock stopped: it waits on something else.

        The watchdog reads ``expires_at`` afresh each time it wakes: a
        deadline pushed back only sends it back to sleep.
        """
        with self._lock:
            expires_at, self.expires_at = self.expires_at, math.inf
        started = time.monotonic()
        try:
            return wait()
        finally:
            with self._lock:
                self.expires_at = expires_at + (time.monotonic() - started)
            _watchdog.arm(self)  # it may have gone to sleep for good meanwhile

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    def timeout(self, per_operation: float | None, stage: str) -> float:
        """Return the socket timeout to use now: never past the deadline."""
        left = self.remaining()
        if left <= 0:
            self.expired = True
            raise DeadlineExceeded(self.seconds, stage)
        return left if per_operation is None else min(per_operation, left)

    def watch(self, sock: socket.socket | None) -> None:
        """Make ``sock`` the socket to shut down when the deadline passes.

        The watch holds a duplicate descriptor of the same connection: a TLS
        wrap detaches the original socket object, and a shutdown through the
        duplicate still reaches the handshake or the read behind it.
        """
        with self._lock:
            self._forget()
            if sock is None or sock.fileno() < 0:
                return
            self._socket = socket.fromfd(sock.fileno(), sock.family, sock.type)
            if self.expired:
                _shutdown(self._socket)

    def call(self, stage: str, func: Callable[..., T], *args: object) -> T:
        """Run a call that cannot be interrupted, giving up at the deadline.

        The helper thread is a daemon and holds no socket of ours, so leaving
        it behind costs a thread until the lookup returns, and nothing else.
        """
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(func(*args))
            except BaseException as exc:  # noqa: BLE001  (handed to the caller)
                failure.append(exc)

        worker = threading.Thread(target=run, name=f"outbox-{stage}", daemon=True)
        worker.start()
        worker.join(self.timeout(None, stage))
        if worker.is_alive():
            self.expired = True
            raise DeadlineExceeded(self.seconds, stage)
        if failure:
            raise failure[0]
        return outcome[0]

    def expire(self) -> None:
        """Mark the deadline passed and wake whatever waits on its socket."""
        with self._lock:
            self.expired = True
            if self._socket is not None:
                _shutdown(self._socket)

    def _forget(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class _Watchdog:
    """One thread per process that expires deadlines when they pass.

    A thread per send would cost a thread start for every message, and its
    start competes for the interpreter lock with the send itself. Deadlines
    of one process are armed in order of expiry, so the watchdog is only
    woken when it is idle; otherwise it wakes at the time it already knew.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: set[Deadline] = set()
        self._wakes_at = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, deadline: Deadline) -> None:
        with self._changed:
            self._armed.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                # Also after a fork, which keeps the object but not the thread.
                self._thread = threading.Thread(
                    target=self._run, name="outbox-watchdog", daemon=True
                )
                self._thread.start()
            if deadline.expires_at < self._wakes_at:
                self._changed.notify()

    def disarm(self, deadline: Deadline) -> None:
        with self._changed:
            self._armed.discard(deadline)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._armed if d.expires_at <= now]:
                    self._armed.discard(deadline)
                    deadline.expire()
                self._wakes_at = min(
                    (d.expires_at for d in self._armed), default=math.inf
                )
                wait = None if self._wakes_at == math.inf else self._wakes_at - now
                self._changed.wait(wait)


_watchdog = _Watchdog()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, not SSLSocket's: that one drops the TLS
    # object first, which would race with the reader in the other thread.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its owner: nothing left to wake
