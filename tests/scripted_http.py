"""A local HTTP server whose answers are scripted per resource, for offline retry tests.

``route(method, path, body, base_url) -> (key, make)`` names the resource a request asks for and how to
build its JSON; ``answers[key]`` lists the statuses it gives in turn (the last one repeats; 200 when none),
``"hang up"`` closing the connection without an answer, ``"cut off"`` sending half of a 200's body;
``seen`` records ``(method, key)`` per request.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Route = Callable[[str, str, dict[str, Any], str], tuple[str, Callable[[], Any]]]


@dataclass
class Server:
    """A running scripted server: its base ``url``, the ``answers`` script and the requests ``seen``."""

    url: str
    answers: dict[str, list[int | str]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def serve(route: Route) -> Iterator[Server]:
    """Serve ``route`` on 127.0.0.1 in a thread while the block runs."""
    state = Server("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer({})

        def do_POST(self) -> None:
            self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}"))

        def _answer(self, body: dict[str, Any]) -> None:
            key, make = route(self.command, self.path, body, state.url)
            state.seen.append((self.command, key))
            script = state.answers.get(key, [])
            status = script.pop(0) if len(script) > 1 else (script[0] if script else 200)
            if status == "hang up":
                self.close_connection = True
                return
            cut = status == "cut off"  # a 200 whose body breaks off half-way
            text = (
                json.dumps(make()).encode()
                if status in (200, "cut off")
                else f"{key} answer {status}".encode()
            )
            self.send_response(200 if cut else int(status))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text[: len(text) // 2] if cut else text)
            self.close_connection = self.close_connection or cut

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
