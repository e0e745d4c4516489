"""A counting SMTP sink in its own process, for the benchmarks.

Usage: python bench/sink.py PORT DELAY_SECONDS [--stamp]
It accepts every message, optionally waiting DELAY_SECONDS per message as a
remote relay would, and exits on SIGTERM. With --stamp it prints
"<Message-ID> <arrival time>" for every message, for latency figures.
"""

import asyncio
import re
import signal
import sys
import time
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self, delay: float, stamp: bool) -> None:
        self.delay = delay
        self.stamp = stamp

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.time()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.stamp:
            data: bytes = envelope.original_content or b""
            match = re.search(
                rb"^Message-ID: (\S+)", data, re.MULTILINE | re.IGNORECASE
            )
            message_id = match.group(1).decode() if match else "?"
            sys.stdout.write(f"{message_id} {arrived:.6f}\n")
            sys.stdout.flush()
        return "250 OK"


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    stamp = "--stamp" in sys.argv[3:]
    controller = Controller(Counter(delay, stamp), hostname="127.0.0.1", port=port)
    controller.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
