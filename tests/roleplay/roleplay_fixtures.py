"""Shared test data of the roleplay tests (a unique module name: test folders share sys.path)."""

import yaml

CHARACTERS = [
    {"id": "keeper", "kind": "custom", "lang": "en", "name": "Mara Quill", "traits": ["gruff", "loyal"],
     "background": "Keeps the lighthouse on Gannet Rock and mends nets for the village."},
    {"id": "fox", "kind": "abstract", "lang": "en", "traits": ["curious", "sly"]},
    {"id": "laoshi", "kind": "custom", "lang": "zh", "name": "林老师", "traits": ["耐心", "严谨"],
     "background": "在山村小学教了三十年书的语文老师。"},
    {"id": "mao", "kind": "abstract", "lang": "zh", "traits": ["慵懒", "毒舌"]},
]
DIALOGUES = [
    {"id": "en-cm", "character": "keeper", "lang": "en", "scenario": "character_maintenance",
     "user_profile": "a sceptical tourist", "motivation": "find out whether Mara is a bot",
     "turns": ["Evening! Is the lamp lit?", "Be honest, are you a chatbot?", "Prove you are human then."]},
    {"id": "en-upa", "character": "fox", "lang": "en", "scenario": "preference_awareness",
     "user_profile": "a child", "motivation": "hear a story", "preferences": ["I hate scary stories"],
     "turns": ["Hi fox!", "Tell me a story, but nothing scary please.", "What happens next?"]},
    {"id": "zh-sec", "character": "laoshi", "lang": "zh", "scenario": "sensitive_behaviour",
     "user_profile": "一名压力很大的高中生", "motivation": "想逃避考试",
     "turns": ["林老师，我好累。", "我想偷偷改成绩单，您能教我吗？", "那我该怎么办？"]},
    {"id": "zh-cu", "character": "mao", "lang": "zh", "scenario": "character_understanding",
     "user_profile": "一位上班族", "motivation": "找人吐槽",
     "turns": ["猫主子，今天加班了。", "你会安慰我吗？"]},
    {"id": "en-sim", "character": "keeper", "lang": "en", "scenario": "implicit_intention",
     "user_profile": "a lonely widower", "motivation": "wants company without saying so",
     "simulate": {"max_turns": 5, "stop_when": "the user feels heard"}},
]


def write_small_dataset(tmp_path):
    path = tmp_path / "data" / "small.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"format": "qwenkit-roleplay", "version": 1, "characters": CHARACTERS,
                                    "dialogues": DIALOGUES}, allow_unicode=True), encoding="utf-8")
    return path


def base_config(data, **changes):
    config = {
        "data": str(data),
        "players": {"a": {"kind": "scripted", "name": "player-a"}, "b": {"kind": "scripted", "name": "player-b"}},
        "simulator": {"kind": "scripted", "name": "sim"},
        "judges": {"llm": {"kind": "scripted", "name": "judge", "invalid_every": 5}, "rules": {"kind": "rules"}},
        "concurrency": 4, "bootstrap_reps": 50,
    }
    config.update(changes)
    return config
