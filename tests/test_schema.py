"""schema.validated: one pydantic TypeAdapter per model, shared with the training config's dump."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from landprompt import schema
from landprompt.batch.spec import JobSpec, parse_batch
from landprompt.errors import BadInputError
from landprompt.examples import example_text
from landprompt.train import config

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "train_example.yaml"


def test_each_model_gets_one_type_adapter_however_often_it_is_validated(monkeypatch) -> None:
    built: list[Any] = []

    def counting(model: Any) -> TypeAdapter[Any]:
        built.append(model)
        return TypeAdapter(model)

    monkeypatch.setattr(schema, "TypeAdapter", counting)
    monkeypatch.setattr(schema, "_ADAPTERS", {}, raising=False)
    batch = yaml.safe_load(example_text("batch"))
    raw = yaml.safe_load(EXAMPLE.read_text())
    for _ in range(3):
        assert parse_batch(batch).kind == "map"
        assert config.config_from_dict(raw).run.steps > 0
    with pytest.raises(BadInputError, match="steps"):
        config.config_from_dict({**raw, "run": {**raw["run"], "steps": -1}})
    assert built == [JobSpec, config.TrainConfig]  # not one a call


def test_the_training_config_dumps_and_describes_itself_with_the_shared_adapter() -> None:
    shared = schema.adapter(config.TrainConfig)
    assert config.json_schema.__self__ is shared  # type: ignore[attr-defined]
    loaded = config.config_from_dict(yaml.safe_load(EXAMPLE.read_text()))
    assert shared.validate_python(loaded.to_dict()) == loaded
