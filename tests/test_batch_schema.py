"""The batch file's pydantic models: the shipped example validates, the JSON Schema describes every key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from landprompt.batch.spec import KIND_KEYS, JobSpec, parse_batch
from landprompt.cli import app
from landprompt.errors import BadInputError
from landprompt.examples import example_text

MINIMAL = {"cube": "c.zarr", "out": "maps", "concepts": ["a lake"]}


def test_the_example_batch_file_validates() -> None:
    keys = parse_batch(yaml.safe_load(example_text("batch")))
    assert keys.kind == "map" and keys.cube == Path("../demo-output/cube.zarr") and keys.clip is None
    assert [(c.name, c.prompt) for c in keys.concepts] == [
        (None, "a lake"),
        ("woods", "a forest"),
        ("village", "a village"),
    ]
    assert keys.concepts[2].versus == ["grassland", "a lake", "a forest", "crop fields"]
    assert [a.name for a in keys.areas or []] == ["north", "south"]
    assert keys.defaults.formats == ["cog", "png", "html"] and keys.defaults.style == "ground"


@pytest.mark.parametrize("kind", ["change", "aggregate", "points"])
def test_the_examples_commented_batches_of_other_kinds_validate(kind: str) -> None:
    """The header shows a batch of each other kind; uncommented, each validates."""
    text = example_text("batch")
    block = re.search(rf"^#   kind: {kind}\n((?:#   \S.*\n)+)", text, re.MULTILINE)
    assert block is not None, kind
    data = yaml.safe_load("\n".join(line[4:] for line in block.group(0).splitlines()))
    keys = parse_batch(MINIMAL | data)
    assert keys.kind == kind and set(keys.model_fields_set) >= set(data)


def test_schema_command_describes_every_key() -> None:
    result = CliRunner().invoke(app, ["query", "export", "--schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert set(schema["required"]) == {"cube", "out", "concepts"} and schema["additionalProperties"] is False
    example = yaml.safe_load(example_text("batch"))
    assert set(example) <= set(schema["properties"]) and set(example["defaults"]) <= set(
        schema["$defs"]["DefaultKeys"]["properties"]
    )
    for model in [schema, *schema["$defs"].values()]:
        for name, spec in model["properties"].items():
            assert spec.get("description"), f"{model['title']}.{name} has no description"
            if name in KIND_KEYS:  # a key of some kinds says which
                assert spec["description"].startswith(f"[{', '.join(KIND_KEYS[name])}]"), name
    assert schema["properties"]["kind"]["enum"] == ["map", "change", "aggregate", "points"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concept": ["a lake"]}, r"^unknown key 'concept'; did you mean 'concepts'\?$"),
        (
            {"defaults": {"dtype": "float64"}},
            r"^defaults\.dtype: unknown dtype 'float64'; choose one of float32, uint8$",
        ),
        ({"defaults": {"calibrated": "yes"}}, r"^defaults\.calibrated: must be true or false, got 'yes'$"),
        (
            {"defaults": {"threshold": 1.0}, "kind": "change"},
            r"^defaults\.threshold: must be a probability in \[0, 1\)",
        ),
        (
            {"kind": "points", "defaults": {"block_km": float("nan")}},
            r"^defaults\.block_km: must be a positive",
        ),
        (
            {"kind": "points", "units": "u.gpkg"},
            r"^units: applies to kind aggregate only, and this batch is kind points$",
        ),
        (
            {"concepts": ["a lake", {"name": "x"}, {"versus": ["a"]}]},
            r"^concepts\[2\]: a concept needs a prompt",
        ),
        (
            {"concepts": [{"prompt": "x", "versus": "grass"}]},
            r"^concepts\[0\]\.versus: give a list of background",
        ),
        ({"out": None}, r"^out: must be a non-empty string, got None$"),
        (
            {"clip": {"model": "ViT-B-32", "pretrainde": "x"}},
            r"^clip: unknown key 'pretrainde'; did you mean 'pretrained'\?$",
        ),
        ({"areas": [{"bbox": "1,2,3,4"}]}, r"^areas\[0\]\.name: required key is missing$"),
    ],
)
def test_schema_errors_are_one_line_naming_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_batch(MINIMAL | change)


def test_null_defaults_and_a_bare_prompt_take_the_defaults() -> None:
    keys = parse_batch(MINIMAL | {"defaults": None})
    assert keys.defaults == JobSpec.model_validate(MINIMAL).defaults
    assert (
        keys.defaults.dtype == "float32" and keys.defaults.block_km == 10.0 and not keys.defaults.calibrated
    )
    assert keys.concepts[0].prompt == "a lake" and "versus" not in keys.concepts[0].model_fields_set
