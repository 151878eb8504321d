"""The photo sources' HTTP fetchers: each request retried in a urllib3.Retry session, then one-line errors."""

import pytest

from landprompt.errors import BadInputError, ServiceUnavailableError
from landprompt.pairs.http import (
    USER_AGENT,
    http_get_bytes,
    http_get_json,
    http_get_photo,
    http_session,
    photo_session,
)
from landprompt.retry import TRANSIENT_STATUS, retrying_session
from scripted_http import serve


def route(method, path, body, base):
    """Each path is its own resource; its JSON echoes the path."""
    return path.split("?")[0], lambda: {"path": path}


@pytest.fixture
def server():
    with serve(route) as running:
        yield running


@pytest.fixture
def session():
    """The fetchers' retry policy without the waits."""
    return retrying_session(retries=4, backoff=0.0)


def test_transient_answers_are_retried_in_the_session(server, session):
    server.answers["/a"] = [503, 429, 200]
    assert http_get_json(f"{server.url}/a", {"q": "1"}, session=session) == {"path": "/a?q=1"}
    assert http_get_bytes(f"{server.url}/b", session=session) == b'{"path": "/b"}'
    assert server.seen == [("GET", "/a")] * 3 + [("GET", "/b")]


def test_a_service_that_keeps_failing_is_one_line_after_every_try(server, session):
    server.answers["/down"] = [502]
    with pytest.raises(
        ServiceUnavailableError, match=r"GET .*/down failed 5 times, last: HTTP 502 Bad Gateway; "
    ) as e:
        http_get_json(f"{server.url}/down", {}, session=session)
    assert server.seen == [("GET", "/down")] * 5 and "\n" not in str(e.value)
    server.answers["/gone"] = ["hang up"]
    with pytest.raises(ServiceUnavailableError, match=r"/gone failed 5 times, last: .*Connection aborted"):
        http_get_bytes(f"{server.url}/gone", session=session)


def test_a_404_fails_at_once(server, session):
    server.answers["/missing"] = [404]
    with pytest.raises(BadInputError, match=r"^GET .*/missing was refused: HTTP 404 Not Found$"):
        http_get_bytes(f"{server.url}/missing", session=session)
    assert server.seen == [("GET", "/missing")]


def test_the_default_session_retries_transient_statuses_as_a_user_agent():
    session = http_session()
    retry = session.get_adapter("https://api.flickr.com/").max_retries
    assert (
        retry.total == 4 and retry.allowed_methods is None and set(retry.status_forcelist) == TRANSIENT_STATUS
    )
    assert session.headers["User-Agent"] == USER_AGENT and http_session() is session


def test_a_photo_download_retries_once_then_is_marked_missing(server):
    """Photo embedding's default fetch: a dead host must not cost ~28 s of backoff per photo."""
    import inspect

    from landprompt.embedder.photos import embed_photos

    assert inspect.signature(embed_photos).parameters["fetch"].default is http_get_photo
    retry = photo_session().get_adapter("https://example.org/").max_retries
    assert retry.total == 1 and retry.backoff_factor <= 0.5 and photo_session() is not http_session()
    # a Retry-After of hours must not park a loader thread: photos keep to the backoff schedule
    assert not retry.respect_retry_after_header
    assert http_session().get_adapter("https://example.org/").max_retries.respect_retry_after_header
    server.answers["/photo.jpg"] = [503]
    with pytest.raises(ServiceUnavailableError, match=r"failed 2 times, .*marked missing; --retry-") as e:
        http_get_photo(f"{server.url}/photo.jpg")
    assert server.seen == [("GET", "/photo.jpg")] * 2
    assert "resumes where it stopped" not in str(e.value)


def test_the_photo_sessions_retry_with_a_plain_urllib3_retry():
    """Only the STAC session counts its retries (for its give-up line); these need no counter."""
    from urllib3.util.retry import Retry

    for made in (http_session(), photo_session(), retrying_session()):
        policy = made.get_adapter("https://example.org").max_retries
        assert type(policy) is Retry and policy.total > 0
