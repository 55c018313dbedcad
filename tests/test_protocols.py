"""Response protocols: the action-only parser on what small instruct models really write, and the wiring."""

from __future__ import annotations

import pytest

from agent_rl.config import ConfigError, load_config
from agent_rl.env_api import ActionSyntax
from agent_rl.policy.base import PolicyRequest
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.rollout.memory import HistoryMemory, memory_for
from agent_rl.rollout.protocols import ACTION_ONLY, TAGS, parse_action_only, protocol_of

CODE = ActionSyntax(multiline=True)

# (response, action or None). The accepted ones are shaped like SmolLM2-135M-Instruct's zero-shot replies
# on textworld/demo-v0 (experiments/results/smollm2/) and like what larger chat models add around a command.
ACTION_ONLY_TABLE = [
    ("take apple", "take apple"),
    ("take apple\n", "take apple"),
    ("  open   the\tchest ", "open the chest"),
    ("Action: go north", "go north"),
    ("**Action:** go north", "go north"),
    ("Next action: open door", "open door"),
    ("action = look", "look"),
    ("Action:\ngo north", "go north"),
    ("Here is my next action:\n\ntake key from table", "take key from table"),
    ("`take apple`", "take apple"),
    ('"take apple"', "take apple"),
    ("'take apple'", "take apple"),
    ("**take apple**", "take apple"),
    ("```\ntake apple\n```", "take apple"),
    ("```text\ninsert apple into box\n```\nThis puts the apple away.", "insert apple into box"),
    ("- open box", "open box"),
    ("1. open box\n2. take apple", "open box"),
    ("take the apple. Then I will put it into the box.", "take the apple"),
    ("go east!", "go east"),
    ("take apple\nThe apple is on the table, so I take it first.", "take apple"),
    ("<think>the apple is on the table</think>take apple", "take apple"),
    ("<think>a</think>\n<action>open box</action>", "open box"),  # tags still read as tags
    ("<search>what does yield do</search>", "<search>what does yield do</search>"),
    ("<answer>a generator</answer> because the function yields.", "<answer>a generator</answer>"),
    ("search[blue cotton shirt under 30 dollars, size large, long sleeve, for men, machine wash]",
     "search[blue cotton shirt under 30 dollars, size large, long sleeve, for men, machine wash]"),
    ("click[Buy Now]", "click[Buy Now]"),
    # garbage
    ("", None),
    ("   \n\n  ", None),
    ("<think>I am still thinking about what to", None),
    (("-= Kitchen =- You are in a kitchen. You see a closed box and a table with an apple on it and there is "
      "an exit to the north and another one to the south"), None),
    ("I think that the best thing to do now would be to look around the room for the key to the box", None),
    ("```\n\n```", None),
    ("take\x00apple", None),
    ("x" * 300, None),
    ("<action>go east</action><action>go west</action>", None),
]


@pytest.mark.parametrize(("text", "action"), ACTION_ONLY_TABLE, ids=[f"r{i}" for i in range(len(ACTION_ONLY_TABLE))])
def test_action_only_parser_table(text: str, action: str | None):
    parsed = parse_action_only(text)
    assert parsed.action == action
    assert bool(parsed.error) == (action is None)


def test_action_only_keeps_code_lines_for_multiline_envs():
    text = "```python\nnotes = apis.simple_note.search_notes()\nfor n in notes:\n    print(n)\n```\nThis lists them."
    assert parse_action_only(text, CODE).action == "notes = apis.simple_note.search_notes()\nfor n in notes:\n    print(n)"
    assert parse_action_only("print(1)\n", CODE).action == "print(1)"
    assert parse_action_only("", CODE).action is None


def test_action_only_rejects_a_flood_quickly():
    assert parse_action_only("```" * 30_000).action is None
    assert parse_action_only("<think>" * 10_000).action is None
    assert parse_action_only("word " * 50_000).action is None


@pytest.mark.parametrize("protocol", [TAGS, ACTION_ONLY])
def test_format_round_trips_through_its_parser(protocol):
    for action in ("open chest", "<search>q</search>", "click[Buy Now]"):
        assert protocol.parse(protocol.format(action), ActionSyntax()).action == action


def test_protocol_selection_from_config_and_errors():
    assert memory_for(load_config(overrides=["env.protocol=action-only"]).env).protocol is ACTION_ONLY
    assert memory_for(load_config().env).protocol is TAGS
    with pytest.raises(ConfigError, match="env.protocol"):
        load_config(overrides=["env.protocol=json"])


def test_the_admissible_list_can_be_hidden_from_the_prompt():
    shown = memory_for(load_config().env).messages("find it", [], "a room", ["<search>QUERY</search>"])
    hidden = memory_for(load_config(overrides=["env.show_admissible=false"]).env).messages(
        "find it", [], "a room", ["<search>QUERY</search>"])
    assert "<search>QUERY</search>" in shown[-1]["content"]
    assert "QUERY" not in hidden[-1]["content"] and "a room" in hidden[-1]["content"]
    with pytest.raises(ValueError, match="unknown response protocol"):
        protocol_of("json")


def test_memory_system_prompt_follows_the_protocol():
    assert HistoryMemory(protocol=ACTION_ONLY).messages("t", [], "o", [])[0]["content"] == ACTION_ONLY.instruction
    assert HistoryMemory(protocol=ACTION_ONLY, system_prompt="mine").system_prompt == "mine"


def test_expert_writes_in_the_protocol():
    request = PolicyRequest(messages=[], info={"expert_action": "go north"})
    assert ExpertPolicy(protocol=ACTION_ONLY).act([request])[0].text == "go north"
    assert ExpertPolicy().act([request])[0].text == "<action>go north</action>"


def test_eval_of_a_run_plays_its_response_protocol_unless_told(tmp_path):
    from agent_rl.cli import build_parser
    from agent_rl.config import to_yaml
    from agent_rl.eval.runner import resolve_protocol

    (tmp_path / "config.yaml").write_text(to_yaml(load_config(overrides=["env.protocol=action-only"])))
    said = []
    for flags, expected in (([], "action-only"), (["--protocol", "tags"], "tags")):
        args = build_parser().parse_args(["eval", "--policy", str(tmp_path / "checkpoints" / "iter-000001"), *flags])
        resolve_protocol(args, log=said.append)
        assert args.protocol == expected
    assert "response protocol action-only (from the run)" in said[0] and "tags (given)" in said[1]
    bare = build_parser().parse_args(["eval", "--env", "textworld/demo-v0", "--policy", "expert"])
    resolve_protocol(bare)
    assert bare.protocol == "tags"


def test_the_zero_shot_table_covers_every_built_in_env_family():
    from experiment_scripts import load_experiment

    from agent_rl.registry import registered_ids, spec

    built_in = {i.split("/")[0] for i in registered_ids() if spec(i).entry_point.startswith("agent_rl.envs.")}
    budgets = load_experiment("smollm2_zero_shot").BUDGETS
    assert {i.split("/")[0] for i in budgets} == built_in and all(b.split == "test" for b in budgets.values())
