import json

import pytest
from roleplay_fixtures import base_config

from qwenkit.core.config import load_config
from qwenkit.roleplay.data import RoleplayDataError
from qwenkit.roleplay.rmtbench import load_rmtbench
from qwenkit.roleplay.run import RunConfig, execute_run, read_jsonl

RECORDS = [
    {"id": "m-1", "language": "English", "role_name": "Captain Vey",
     "character_profile": "A retired airship captain who runs a tea house at the edge of the desert; misses the sky.",
     "user_turns": [{"role": "user", "content": "Captain, are you an AI?"}, {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "Tell me about the sky."}]},
    {"id": "m-2", "language": "zh", "character_profile": "慵懒、毒舌", "turns": ["你好", "你是谁？"]},
]


@pytest.fixture
def rmt_dir(tmp_path):
    folder = tmp_path / "rmt"
    folder.mkdir()
    (folder / "maintenance_mixed.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n", encoding="utf-8")
    (folder / "user_preference.json").write_text(json.dumps([
        {"id": "p-1", "subset": "user_preference", "lang": "en", "profile": "cheerful, forgetful",
         "utterances": ["I hate onions.", "What should I cook?"], "user_motivation": "plan dinner"}]),
        encoding="utf-8")
    return folder


def test_fixture_loads_into_cards_and_scripts(rmt_dir):
    dataset = load_rmtbench(rmt_dir)
    by_id = {d.id: d for d in dataset.dialogues}
    assert by_id["m-1"].scenario == "character_maintenance" and by_id["m-1"].lang == "en"
    assert by_id["m-1"].turns == ["Captain, are you an AI?", "Tell me about the sky."]
    assert by_id["p-1"].scenario == "preference_awareness" and by_id["p-1"].motivation == "plan dinner"
    captain = dataset.character(by_id["m-1"])
    assert captain.kind == "custom" and captain.name == "Captain Vey" and "airship" in captain.background
    cat = dataset.character(by_id["m-2"])
    assert cat.kind == "abstract" and cat.traits == ["慵懒", "毒舌"] and cat.lang == "zh"


def test_a_run_reads_rmtbench_data(rmt_dir, tmp_path):
    config = load_config(RunConfig, base_config(f"rmtbench:{rmt_dir}", simulator=None))
    execute_run(config, tmp_path / "run")
    dims = {(j["dialogue_id"], j["dimension"]) for j in read_jsonl(tmp_path / "run" / "judgments.jsonl")}
    assert ("m-1", "CM") in dims and ("p-1", "UPA") in dims


@pytest.mark.parametrize(
    ("record", "pattern"),
    [
        ({"id": "x", "language": "fr", "character_profile": "a", "turns": ["hi"]}, "field 'language'"),
        ({"id": "x", "language": "en", "turns": ["hi"]}, "field 'character_profile'"),
        ({"id": "x", "language": "en", "character_profile": "a", "turns": []}, "field 'user_turns'"),
        ({"id": "x", "subset": "karaoke", "language": "en", "character_profile": "a", "turns": ["hi"]},
         "field 'subset'"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, record, pattern):
    path = tmp_path / "maintenance.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(RoleplayDataError, match=pattern) as info:
        load_rmtbench(path)
    assert "maintenance.jsonl: record 1" in str(info.value)
