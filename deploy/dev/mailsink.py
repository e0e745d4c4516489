"""A local SMTP server for development: prints and saves every message.

Messages are printed (headers and the plain-text part) and saved as .eml files
under the folder given with --maildir. It listens on loopback only.
"""

import argparse
import asyncio
import email
import email.policy
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class PrintAndSave:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        data: bytes = envelope.original_content or b""
        # The process id keeps a restarted sink from reusing a name.
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.maildir / f"{stamp}-{os.getpid()}-{self.count}.eml"
        path.write_bytes(data)
        message = email.message_from_bytes(data, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else "(no plain-text part)"
        lines = [
            "",
            f"=== mail #{self.count} received, saved to {path}",
            f"From: {message['From']}",
            f"To: {', '.join(envelope.rcpt_tos)}",
            f"Subject: {message['Subject']}",
            f"Message-ID: {message['Message-ID']}",
            "",
            text.rstrip(),
            "=== end of mail",
            "",
        ]
        sys.stdout.write("\n".join(lines))
        sys.stdout.flush()
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    args.maildir.mkdir(parents=True, exist_ok=True)

    controller = Controller(
        PrintAndSave(args.maildir), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    sys.stdout.write(f"mail sink listening on 127.0.0.1:{args.port}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
