"""Retries for calls to remote services (STAC APIs, photo sources): one ``urllib3.Retry`` per HTTP session.

HTTP requests retry inside the session, each request on its own (a 503 on page 10 of a search retries page 10,
not the search), POST included; :func:`with_backoff` is left for failures no HTTP status shows (an API's
"try later" answer inside an HTTP 200).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

_T = TypeVar("_T")

#: HTTP statuses worth another try: timeout, rate limit, server errors.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class CountedRetry(Retry):
    """A ``urllib3.Retry`` that counts the retries it grants, over all its copies.

    urllib3 makes a new ``Retry`` for every retry (:meth:`increment`); the copies share one counter, so a
    caller can read how many tries a request took even when the request ends in an exception.

    Attributes:
        granted: A one-element list: retries granted so far (each one a further try), shared by the copies.
    """

    def __init__(self, *args: Any, granted: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.granted = [0] if granted is None else granted

    def new(self, **kw: Any) -> CountedRetry:
        """A copy with ``kw`` changed, sharing the counter."""
        kw.setdefault("granted", self.granted)
        return super().new(**kw)

    def increment(self, *args: Any, **kwargs: Any) -> CountedRetry:
        """The next retry (counted); raises ``MaxRetryError`` when the retries are spent."""
        retry = super().increment(*args, **kwargs)
        self.granted[0] += 1
        return retry


@overload
def http_retry(
    retries: int = ..., backoff: float = ..., retry_after: bool = ..., *, counted: Literal[False] = ...
) -> Retry: ...


@overload
def http_retry(
    retries: int = ..., backoff: float = ..., retry_after: bool = ..., *, counted: Literal[True]
) -> CountedRetry: ...


def http_retry(
    retries: int = 3, backoff: float = 1.0, retry_after: bool = True, *, counted: bool = False
) -> Retry:
    """The retry policy of every landprompt HTTP session.

    Connection errors, read errors and :data:`TRANSIENT_STATUS` answers are retried for every method (POST
    searches too): the first retry at once, then after ``backoff * 2``, ``* 4``, ... seconds (urllib3's
    schedule), or as long as a ``Retry-After`` header asks. When the retries are spent the last answer is
    returned, so callers see its status.

    Args:
        retries: Further attempts after the first.
        backoff: urllib3's ``backoff_factor`` in seconds.
        retry_after: Wait as long as a ``Retry-After`` header asks (up to urllib3's cap of hours); False
            keeps to the backoff schedule (photo downloads: a photo is marked missing instead).
        counted: A :class:`CountedRetry` (its counter is not thread-safe: for a session whose requests
            go one at a time) instead of a plain ``urllib3.Retry``.
    """
    return (CountedRetry if counted else Retry)(
        total=max(0, retries),
        backoff_factor=backoff,
        status_forcelist=TRANSIENT_STATUS,
        allowed_methods=None,
        raise_on_status=False,
        respect_retry_after_header=retry_after,
    )


def retrying_session(
    retries: int = 3, backoff: float = 1.0, headers: dict[str, str] | None = None, retry_after: bool = True
) -> requests.Session:
    """A ``requests.Session`` whose http(s) adapters retry with :func:`http_retry`."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=http_retry(retries, backoff, retry_after))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(headers or {})
    return session


def one_line(error: BaseException | str) -> str:
    """An error's text on one line of at most 200 characters (its type when it has no text)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def gave_up(what: str, tries: int, error: BaseException | str, hint: str = "") -> str:
    """The one-line message of a service that kept failing: ``"<what> failed 4 times, last: ...; ..."``."""
    return f"{what} failed {tries} times, last: {one_line(error)}; check the network or try later{hint}"


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

    For failures the HTTP session cannot see (use :func:`retrying_session` for HTTP ones).

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
