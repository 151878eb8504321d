"""The ``landprompt serve`` page in headless Chromium: type a concept, the planted area lights up.

The server runs in this process (uvicorn in a thread, on 127.0.0.1); the browser's proxy points nowhere,
so the online base map fails and the page falls back to its plain background, as it does offline.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromium import headless_chromium, requires_chromium

pytestmark = [requires_chromium, pytest.mark.slow]  # ~15 s: a cube, a server and a browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_clip, cube_data):  # type: ignore[no-untyped-def]
    import uvicorn

    from landprompt.serve.app import create_app
    from landprompt.serve.layer import ServedCube

    planted = cube_data.served_cube(tmp_path_factory.mktemp("served-browser"), tiny_clip)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app([ServedCube(planted.path, tiny_clip)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}/", planted
    server.should_exit = True
    thread.join(timeout=10)


def test_page_maps_a_typed_concept_over_the_planted_area(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, planted = server
    driver = headless_chromium(
        "900,700",
        "--proxy-server=http://127.0.0.1:9",  # nothing listens there: the online base map cannot load
        "--proxy-bypass-list=127.0.0.1",
    )
    try:
        driver.get(url)
        driver.find_element(By.ID, "lp-versus").send_keys("sea, a forest")
        driver.find_element(By.ID, "lp-concept").send_keys("olive groves", Keys.ENTER)
        driver.set_script_timeout(60)
        state = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const corners = arguments[0];
            const check = () => {
              const tiles = document.querySelectorAll(".lp-overlay img");
              const loaded = document.querySelectorAll(".lp-overlay img.leaflet-tile-loaded");
              const scores = document.querySelectorAll(".lp-score");
              if (window.lpTilesPending === 0 && tiles.length > 0 && loaded.length === tiles.length
                  && scores.length === 10) {
                setTimeout(() => done({
                  corners: corners.map(c => {
                    const p = lpMap.latLngToContainerPoint(c); return [p.x, p.y];
                  }),
                  tiles: tiles.length, scores: scores.length,
                  exportHref: document.getElementById("lp-export").href, basemap: window.base !== null,
                  status: document.getElementById("lp-status").textContent}), 300);
              } else { setTimeout(check, 100); }
            };
            check();
            """,
            [
                [float(v) for v in planted.grid.rowcol_to_lonlat(r, c)][::-1]
                for r, c in ((64, 128), (128, 192))
            ],
        )
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("LANDPROMPT_SERVE_SCREENSHOT"):
            shutil.copy(shot, os.environ["LANDPROMPT_SERVE_SCREENSHOT"])
    finally:
        driver.quit()
    assert "export.tif?" in state["exportHref"] and "bbox=" in state["exportHref"]
    assert state["status"] == "P(olive groves)"
    assert state["basemap"] is False  # its tiles cannot load: dropped for the plain background
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    (x0, y0), (x1, y1) = state["corners"]  # top-left and bottom-right of the planted block
    w, h = x1 - x0, y1 - y0
    assert w > 20 and h > 20
    inner = rgb[int(y0 + 0.2 * h) : int(y1 - 0.2 * h), int(x0 + 0.2 * w) : int(x1 - 0.2 * w)].mean(axis=-1)
    below = rgb[int(y1 + 0.5 * h) : int(y1 + 1.5 * h), int(x0 + 0.2 * w) : int(x1 - 0.2 * w)].mean(axis=-1)
    assert np.median(inner) > 170, "the planted area is not bright"
    assert np.median(below) < 60, "the area around the planted block is not dark"
