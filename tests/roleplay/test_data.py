import json

import pytest
import yaml

from qwenkit.roleplay.data import (
    DIMENSIONS,
    SCENARIOS,
    RoleplayDataError,
    applicable_dimensions,
    load_dataset,
    load_protocol,
)

CARD = {"id": "c1", "kind": "custom", "lang": "en", "name": "Mara", "traits": ["gruff"],
        "background": "A lighthouse keeper."}
SCRIPT = {"id": "d1", "character": "c1", "lang": "en", "scenario": "character_maintenance",
          "user_profile": "a tourist", "motivation": "test the keeper", "turns": ["Hello?", "Are you real?"]}


def write(tmp_path, characters=(CARD,), dialogues=(SCRIPT,), name="data.yaml", **top):
    data = {"format": "qwenkit-roleplay", "version": 1, "characters": list(characters),
            "dialogues": list(dialogues), **top}
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_applicability_is_read_from_the_protocol():
    assert applicable_dimensions("character_understanding") == ["EE", "EC", "PA", "CU"]
    assert applicable_dimensions("character_maintenance") == ["EE", "EC", "PA", "CU", "CM"]
    assert applicable_dimensions("sensitive_behaviour")[-1] == "SEC"
    assert applicable_dimensions("preference_awareness")[-1] == "UPA"
    assert applicable_dimensions("implicit_intention") == ["EE", "EC", "PA", "CU"]
    protocol = load_protocol()
    assert set(protocol.scenarios) == set(SCENARIOS)
    assert set(protocol.dimensions) == set(DIMENSIONS)
    for spec in protocol.dimensions.values():
        assert spec.rubric.en.strip() and spec.rubric.zh.strip()
    with pytest.raises(RoleplayDataError, match="unknown scenario"):
        applicable_dimensions("karaoke")


def test_valid_file_loads_yaml_and_json(tmp_path):
    dataset = load_dataset(write(tmp_path))
    assert dataset.dialogues[0].scored_dimensions == ["EE", "EC", "PA", "CU", "CM"]
    assert load_dataset(write(tmp_path, name="d.json")).dialogues[0].id == "d1"


def test_dimensions_narrow_the_scenario(tmp_path):
    dataset = load_dataset(write(tmp_path, dialogues=[{**SCRIPT, "dimensions": ["CM"]}]))
    assert dataset.dialogues[0].scored_dimensions == ["CM"]
    with pytest.raises(RoleplayDataError, match=r"dialogues\[0\] \(id 'd1'\).*do not apply.*SEC"):
        load_dataset(write(tmp_path, dialogues=[{**SCRIPT, "dimensions": ["SEC"]}]))


@pytest.mark.parametrize(
    ("card", "script", "pattern"),
    [
        ({**CARD, "kind": "famous"}, SCRIPT, r"characters\[0\] \(id 'c1'\): field 'kind'"),
        ({**CARD, "background": ""}, SCRIPT, r"characters\[0\].*custom character needs a background"),
        ({**CARD, "traits": []}, SCRIPT, r"field 'traits'"),
        ({**CARD, "colour": "red"}, SCRIPT, r"field 'colour': unknown field"),
        (CARD, {**SCRIPT, "scenario": "karaoke"}, r"dialogues\[0\] \(id 'd1'\): field 'scenario'"),
        (CARD, {**SCRIPT, "character": "nobody"}, r"field 'character': no character with id 'nobody'"),
        (CARD, {**SCRIPT, "lang": "zh"}, r"field 'lang': 'zh' differs"),
        (CARD, {k: v for k, v in SCRIPT.items() if k != "turns"}, r"exactly one of turns"),
        (CARD, {**SCRIPT, "simulate": {"max_turns": 3, "stop_when": "done"}}, r"exactly one of turns"),
        (CARD, {**SCRIPT, "turns": ["hi", " "]}, r"field 'turns'.*\[1\] are blank"),
        (CARD, {**SCRIPT, "user_profile": None}, r"field 'user_profile'"),
        (CARD, {k: v for k, v in SCRIPT.items() if k != "motivation"}, r"field 'motivation': required"),
    ],
)
def test_bad_records_name_file_record_and_field(tmp_path, card, script, pattern):
    path = write(tmp_path, characters=[card], dialogues=[script])
    with pytest.raises(RoleplayDataError, match=pattern) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(RoleplayDataError, match="no such file"):
        load_dataset(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("characters: [\n", encoding="utf-8")
    with pytest.raises(RoleplayDataError, match="bad.yaml: not valid YAML"):
        load_dataset(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n", encoding="utf-8")
    with pytest.raises(RoleplayDataError, match="must hold a mapping"):
        load_dataset(tmp_path / "list.yaml")
    with pytest.raises(RoleplayDataError, match="field 'version' must be 1"):
        load_dataset(write(tmp_path, version=2))
    with pytest.raises(RoleplayDataError, match=r"unknown top-level fields \['extra'\]"):
        load_dataset(write(tmp_path, extra=1))
    with pytest.raises(RoleplayDataError, match="duplicate dialogue id"):
        load_dataset(write(tmp_path, dialogues=[SCRIPT, SCRIPT]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoleplayDataError, match="holds no .yaml"):
        load_dataset(tmp_path / "empty")


def test_directory_merges_files(tmp_path):
    write(tmp_path, dialogues=[], name="a.yaml")
    write(tmp_path, characters=[], name="b.yaml")
    dataset = load_dataset(tmp_path)
    assert list(dataset.characters) == ["c1"] and [d.id for d in dataset.dialogues] == ["d1"]
