"""A counting SMTP sink in its own process, for the benchmarks.

Usage: python bench/sink.py PORT DELAY_SECONDS
It accepts every message, optionally waiting DELAY_SECONDS per message as a
remote relay would, and exits on SIGTERM.
"""

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    controller = Controller(Counter(delay), hostname="127.0.0.1", port=port)
    controller.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
