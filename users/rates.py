"""Parse request rates such as "10/h"; no Django imports, so settings can use it."""

import re

_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(\d{0,6})\s*([smhd])\s*")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidRate(ValueError):
    pass


def parse_rate(rate: str) -> tuple[int, int] | None:
    """Turn "10/h" (or "10/15m") into (10, 3600); empty means no limit.

    A count of 0 or a period of 0 is refused: empty already means "no
    limit", and neither "nobody" nor "per no time" is a rate.
    """
    if not rate.strip():
        return None
    match = _RATE.fullmatch(rate)
    if match is None:
        raise InvalidRate(
            f"{rate!r} is not a rate such as 10/h (count/period, period s, m, h or d)"
        )
    count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
    period = int(multiple or 1) * _SECONDS[unit]
    if count < 1 or period < 1:
        raise InvalidRate(f"{rate!r} needs a count and a period of at least 1")
    return count, period
