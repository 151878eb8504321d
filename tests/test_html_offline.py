"""The HTML map in headless Chromium with networking off: Leaflet runs, the overlay and legend are drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from PIL import Image

from chromium import headless_chromium, requires_chromium
from landprompt.query.maps import write_html

pytestmark = requires_chromium


def half_map() -> xr.DataArray:
    """A 40 x 40 UTM map: probability 1 on the left half (yellow in magma), 0 on the right (black)."""
    values = np.zeros((40, 40), np.float32)
    values[:, :20] = 1.0
    transform = Affine(10.0, 0, 680_000.0, 0, -10.0, 4_800_000.0)
    da = xr.DataArray(values, dims=("y", "x"), name="probability")
    da = da.assign_coords(x=680_005.0 + 10 * np.arange(40), y=4_799_995.0 - 10 * np.arange(40))
    return da.rio.write_crs("EPSG:32632").rio.write_transform(transform)


def test_html_map_draws_its_overlay_offline(tmp_path: Path) -> None:
    page = write_html(half_map(), tmp_path / "map.html", title="P(olive groves)")
    driver = headless_chromium(
        "800,600",
        "--proxy-server=http://127.0.0.1:9",  # nothing listens there: no request leaves the machine
        "--host-resolver-rules=MAP * ~NOTFOUND",
    )
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
        )
        driver.get(page.as_uri())
        driver.set_script_timeout(10)
        state = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const check = () => {
              const img = document.querySelector("img.lp-overlay");
              if (img && img.complete) {
                const box = img.getBoundingClientRect();
                done({leaflet: typeof L !== "undefined", width: img.naturalWidth, box: [box.left, box.top,
                      box.right, box.bottom], legend: !!document.querySelector(".lp-legend"),
                      online: navigator.onLine});
              } else { setTimeout(check, 50); }
            };
            check();
            """
        )
        shot = tmp_path / "map.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert state["leaflet"] and state["legend"] and state["width"] > 0 and state["online"] is False
    left, top, right, bottom = state["box"]
    assert right - left > 100 and bottom - top > 100  # fitted to the map
    with Image.open(shot) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    scale = rgb.shape[1] / 800  # device pixel ratio
    middle = int((top + bottom) / 2 * scale)
    yellow = rgb[middle, int((left + (right - left) * 0.25) * scale)]
    black = rgb[middle, int((left + (right - left) * 0.75) * scale)]
    assert yellow[0] > 180 and yellow[1] > 180  # magma(1) #fcfdbf, at 80 % opacity
    assert black.sum() < 200  # magma(0) #000004 over a blank (offline) base map
