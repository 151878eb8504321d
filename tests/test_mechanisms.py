"""The shared helpers every stage uses: did-you-mean hints, the JSON writer and the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from landprompt.errors import did_you_mean
from landprompt.files import PART, write_json
from landprompt.progress import progress_bar


def test_did_you_mean_phrasings() -> None:
    assert did_you_mean("sitz", ["sits", "clip_rgb"]) == "; did you mean 'sits'?"
    assert did_you_mean("sitz", ["sits"], before=" ", sentence=True) == " Did you mean 'sits'?"
    assert (
        did_you_mean("lrr", ["lr", "wd"], show=lambda k: f"optim.{k}", before="") == "did you mean optim.lr?"
    )
    assert did_you_mean("ViT-B-3", ["ViT-B-32", "ViT-B-16", "RN50"], n=2, show=str) == (
        "; did you mean ViT-B-32, ViT-B-16?"
    )
    assert did_you_mean("zzz", ["sits", "clip_rgb"]) == ""


def test_write_json_writes_atomically_with_a_final_newline(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "a.json", {"x": [1, 2]}, indent=1)
    assert path.read_text() == '{\n "x": [\n  1,\n  2\n ]\n}\n'
    assert json.loads(path.read_text()) == {"x": [1, 2]}


def test_write_json_refusing_a_value_leaves_the_old_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert json.loads(path.read_text()) == {"x": 1}
    assert not [p for p in tmp_path.iterdir() if PART in p.name]


def test_progress_bar_counts_from_done_and_shows_the_note(monkeypatch: pytest.MonkeyPatch) -> None:
    import rich.progress

    bars: list[rich.progress.Progress] = []
    original = rich.progress.Progress

    def recording(*args: object, **kwargs: object) -> rich.progress.Progress:
        bars.append(original(*args, **kwargs))  # type: ignore[arg-type]
        return bars[-1]

    monkeypatch.setattr(rich.progress, "Progress", recording)
    with progress_bar("chunks", 10, enabled=False, done=3) as advance:
        advance()
        advance(2, note="12 px/s")
        advance()
    (task,) = bars[0].tasks
    assert (task.completed, task.total, task.fields["note"]) == (7, 10, "12 px/s")


def test_progress_bar_takes_done_and_total_from_a_chunk_loop() -> None:
    from rich.console import Console

    terminal, piped = io.StringIO(), io.StringIO()
    with progress_bar(
        "scoring",
        unit="pixels",
        console=Console(file=terminal, force_terminal=True, color_system=None, width=100),
    ) as bar:
        bar.to(3, 12)
        bar.to(12, 12)
    assert "scoring" in terminal.getvalue() and "12/12 pixels" in terminal.getvalue()
    # a transient bar off a terminal writes nothing at all (no blank line into a captured stream)
    with progress_bar("scoring", transient=True, console=Console(file=piped)) as bar:
        bar.to(12, 12)
    assert piped.getvalue() == ""


def test_choose_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from landprompt.embedder.device import choose_device
    from landprompt.errors import BadInputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device() == choose_device("auto") == torch.device("cpu")
    with pytest.raises(BadInputError, match="'cuda' asked for, but CUDA is not available here"):
        choose_device("cuda")
    with pytest.raises(BadInputError, match="invalid device 'gpu0'"):
        choose_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert choose_device(None, local_rank=3) == torch.device("cuda", 1)
    assert choose_device("cuda:0", local_rank=3) == torch.device("cuda", 0)


def test_recorded_clip_reads_the_model_a_cube_names() -> None:
    from landprompt.embedder.clip import recorded_clip

    assert recorded_clip({"clip_model": "ViT-B-32", "clip_pretrained": "laion2b_s34b_b79k"}) == (
        "ViT-B-32",
        "laion2b_s34b_b79k",
    )
    assert recorded_clip({"clip_model": "ViT-B-32", "clip_pretrained": ""}) == ("ViT-B-32", None)
    assert recorded_clip({"clip_model": "", "clip_pretrained": "x"}) is None
    assert recorded_clip({}) is None


def test_clip_named_in_loads_the_recorded_model_or_names_the_owner() -> None:
    from landprompt.embedder.clip import TINY_MODEL, clip_named_in, load_clip
    from landprompt.errors import BadInputError

    loaded = clip_named_in({"clip_model": TINY_MODEL, "clip_pretrained": ""}, "cube a.zarr", "cpu")
    expected = load_clip(TINY_MODEL, device="cpu")  # seeded random weights: the same model
    assert loaded.id == expected.id
    np.testing.assert_array_equal(loaded.encode_prompts(["sea"]), expected.encode_prompts(["sea"]))
    with pytest.raises(BadInputError, match=r"^cube a\.zarr does not name its CLIP model: pass clip="):
        clip_named_in({"clip_model": ""}, "cube a.zarr")


def test_one_colour_source_for_maps_tiles_and_legends() -> None:
    from matplotlib import colormaps

    from landprompt.query.colours import colour_lut, legend_colours, probability_rgba

    lut = colour_lut()
    assert np.array_equal(lut, colormaps["magma"](np.arange(256), bytes=True))
    rgba = probability_rgba(np.array([[0.0, 1.0], [np.nan, 0.5]]))
    assert np.array_equal(rgba[0, 0], lut[0]) and np.array_equal(rgba[0, 1], lut[255])
    assert np.array_equal(rgba[1, 0], [0, 0, 0, 0]) and np.array_equal(rgba[1, 1], lut[128])
    assert legend_colours()[0] == "#000004" and legend_colours()[-1] == "#fcfdbf"
    assert len(legend_colours(steps=5)) == 5 and legend_colours("RdBu", 2) == ["#67001f", "#053061"]
