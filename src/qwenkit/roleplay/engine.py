"""The dialogue engine: the model under test writes every character turn, in scripted or simulated mode.

Scripted mode feeds the motivation script's user turns one at a time; simulated mode asks a user-simulator model for
each next user turn (or ``[END]``). The player's history holds only its own earlier replies (RMTBench: pre-filling
another model's replies inflates scores) and never their reasoning (Qwen3's history rule: earlier turns are rendered
as content only). A thinking player gets an exact thinking budget through :func:`qwenkit.infer.generate_chat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from qwenkit.roleplay.backends import OpenAISpec, ScriptedSpec, TransformersSpec
from qwenkit.roleplay.calls import CallRunner, derived_seed
from qwenkit.roleplay.data import CharacterCard, MotivationScript, Protocol

END_MARK = "[END]"
_OPENING = {"en": "(The conversation begins. Write your first message to the character.)",
            "zh": "（对话开始。请写下你给角色的第一条消息。）"}

PlayerSpec = OpenAISpec | TransformersSpec | ScriptedSpec


@dataclass
class Round:
    index: int
    user: str
    reply: str
    reasoning: str = ""
    """Kept in the transcript for reading; never sent back to the player."""
    finish_reason: str = "stop"


@dataclass
class Transcript:
    dialogue_id: str
    player: str
    lang: str
    scenario: str
    character: str
    mode: str
    rounds: list[Round] = field(default_factory=list)
    ended_by: str = "script"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transcript:
        return cls(**{**data, "rounds": [Round(**r) for r in data["rounds"]]})


def player_system_prompt(card: CharacterCard, protocol: Protocol) -> str:
    name = card.name or protocol.player.unnamed.get(card.lang)
    return protocol.player.system.get(card.lang).format(name=name, card=card.describe()).strip()


def simulator_system_prompt(script: MotivationScript, card: CharacterCard, protocol: Protocol) -> str:
    sep = "、" if script.lang == "zh" else "; "
    assert script.simulate is not None
    return protocol.simulator.system.get(script.lang).format(
        stop_when=script.simulate.stop_when, user_profile=script.user_profile, motivation=script.motivation,
        preferences=sep.join(script.preferences) or "-", character=card.describe(),
    ).strip()


def sampling_params(spec, seed: int) -> dict[str, Any]:
    """The fields of a role's spec that change an answer (they go into the cache key)."""
    return {"max_tokens": spec.max_tokens, "temperature": spec.temperature, "top_p": spec.top_p,
            "top_k": spec.top_k, "enable_thinking": spec.enable_thinking, "thinking_budget": spec.thinking_budget,
            "seed": seed}


def complete_once(backend: Any, messages: list[dict[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
    """One reply: ``generate_chat`` with the exact budget when ``thinking_budget`` is set, else ``complete``."""
    if params.get("thinking_budget") is not None:
        from qwenkit.infer import generate_chat

        result = generate_chat(backend, None, [messages], max_new_tokens=params["max_tokens"],
                               thinking_budget=params["thinking_budget"], enable_thinking=True,
                               temperature=params["temperature"], top_p=params["top_p"], top_k=params["top_k"],
                               seed=params["seed"])[0]
        return {"text": result.content, "reasoning": result.reasoning, "usage": dict(result.usage),
                "finish_reason": result.finish_reason, "budget_hit": result.budget_hit}
    extra = {} if params.get("enable_thinking") is None else {"enable_thinking": params["enable_thinking"]}
    completion = backend.complete(messages, max_tokens=params["max_tokens"], temperature=params["temperature"],
                                  top_p=params["top_p"], top_k=params["top_k"], seed=params["seed"], extra=extra)
    return {"text": completion.text, "reasoning": completion.reasoning, "usage": dict(completion.usage),
            "finish_reason": completion.finish_reason}


def _player_messages(system: str, rounds: list[Round], user: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}]
    for past in rounds:
        messages += [{"role": "user", "content": past.user}, {"role": "assistant", "content": past.reply}]
    return messages + [{"role": "user", "content": user}]


def _simulator_messages(system: str, rounds: list[Round], lang: str) -> list[dict[str, str]]:
    # the simulator plays the user: its own turns are "assistant", the character's replies are "user"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": _OPENING[lang]}]
    for past in rounds:
        messages += [{"role": "assistant", "content": past.user}, {"role": "user", "content": past.reply}]
    return messages


def run_dialogue(script: MotivationScript, card: CharacterCard, *, player: str, player_spec, runner: CallRunner,
                 protocol: Protocol, seed: int, simulator_spec=None) -> Transcript:
    """Play one dialogue to its end; every call goes through ``runner`` (cached, limited)."""
    transcript = Transcript(script.id, player, script.lang, script.scenario, card.id,
                            "scripted" if script.turns is not None else "simulated")
    system = player_system_prompt(card, protocol)
    sim_system = simulator_system_prompt(script, card, protocol) if script.simulate is not None else ""
    max_turns = len(script.turns) if script.turns is not None else script.simulate.max_turns
    for index in range(max_turns):
        if script.turns is not None:
            user = script.turns[index]
        else:
            if simulator_spec is None:
                raise ValueError(f"dialogue {script.id!r} is simulated; the run config needs a simulator backend")
            messages = _simulator_messages(sim_system, transcript.rounds, script.lang)
            params = sampling_params(simulator_spec, derived_seed(seed, script.id, player, index, "simulator"))
            answer = runner.call("simulator", messages, params, lambda b, m=messages, p=params: complete_once(b, m, p))
            user = answer["text"].strip()
            if not user or END_MARK in user:
                transcript.ended_by = "simulator"
                break
        messages = _player_messages(system, transcript.rounds, user)
        params = sampling_params(player_spec, derived_seed(seed, script.id, index, "player"))
        answer = runner.call(f"player:{player}", messages, params,
                             lambda b, m=messages, p=params: complete_once(b, m, p))
        transcript.rounds.append(Round(index, user, answer["text"].strip(), answer.get("reasoning", ""),
                                       answer.get("finish_reason", "stop")))
    else:
        transcript.ended_by = "script" if script.turns is not None else "max_turns"
    return transcript
