from typing import Literal

import pytest
from pydantic import Field

from qwenkit.core.config import ConfigError, StrictModel, apply_overrides, dump_config, load_config, parse_override


class Trainer(StrictModel):
    lr: float = Field(1e-3, gt=0)
    schedule: Literal["constant", "cosine"] = "constant"


class Experiment(StrictModel):
    name: str = "run"
    trainer: Trainer = Trainer()
    seeds: list[int] = [0]


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: demo\ntrainer:\n  lr: 0.01\n")
    config = load_config(Experiment, path, ["trainer.schedule=cosine", "seeds=[1, 2]", "trainer.lr=1e-4"])
    assert config.name == "demo"
    assert config.trainer.lr == pytest.approx(1e-4)
    assert config.trainer.schedule == "cosine"
    assert config.seeds == [1, 2]


def test_round_trip_through_yaml(tmp_path):
    config = load_config(Experiment, {"trainer": {"lr": 0.5}})
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(Experiment, path) == config


def test_bad_value_names_field_value_and_allowed():
    with pytest.raises(ConfigError) as err:
        load_config(Experiment, {"trainer": {"schedule": "linear"}})
    message = str(err.value)
    assert "trainer.schedule" in message and "'linear'" in message and "'constant' or 'cosine'" in message
    assert "--set trainer.schedule=" in message


def test_unknown_field_is_an_error():
    with pytest.raises(ConfigError, match=r"trainer\.lrr: unknown field"):
        load_config(Experiment, {"trainer": {"lrr": 1.0}})


def test_constraint_violation():
    with pytest.raises(ConfigError, match=r"trainer\.lr: got -1"):
        load_config(Experiment, {}, ["trainer.lr=-1"])


def test_bad_yaml_points_at_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrainer: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(Experiment, path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Experiment, tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Experiment, path)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override("trainer.lr")
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
