"""Retries with exponential backoff for calls to remote services (STAC APIs, photo sources)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

#: HTTP statuses worth another try: timeout, rate limit, server errors.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def with_backoff(
    call: Callable[[], _T],
    *,
    is_transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException], Exception],
    retries: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Run ``call``, retrying the failures ``is_transient`` accepts after ``backoff * 2**attempt`` seconds.

    Args:
        call: The request.
        is_transient: Whether a failure is worth another attempt; other failures propagate at once.
        give_up: Builds the error raised (from the last failure) once ``retries`` retries have failed.
        retries: Further attempts after the first.
        backoff: Seconds before the first retry, doubling after each.
        sleep: Called with each delay; tests pass a recorder.
    """
    retries = max(0, retries)
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == retries:
                raise give_up(error) from error
            sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")
