"""The key-door corridor env: rules on a hand-built layout, the BFS expert, anchors, splits, registration."""

from __future__ import annotations

import pytest
from agent_rl.envs.keydoor.env import NOT_ADMISSIBLE, KeyDoorEnv
from agent_rl.envs.keydoor.layouts import Layout, split_layouts
from agent_rl.envs.keydoor.world import admissible, apply, describe, expert_plan, start_state

from agent_rl.registry import make

# hall (green key) | kitchen, closet to the north (red key) | red door | study (blue key) | blue door | vault
HAND = Layout(rooms=("hall", "kitchen", "study"), closets=frozenset({1}), doors=((1, "red"), (2, "blue")),
              keys=(("c1", "red"), ("2", "blue"), ("0", "green")))


def play(layout: Layout, actions: list[str]):
    state = start_state(layout)
    for action in actions:
        assert action in admissible(layout, state), (action, admissible(layout, state))
        state, _ = apply(layout, state, action)
    return state


def test_expert_plan_on_the_hand_layout_is_the_shortest_by_hand():
    assert expert_plan(HAND, start_state(HAND)) == [
        "go east", "go north", "take red key", "go south", "open red door", "go east", "take blue key",
        "open blue door", "go east", "take treasure"]
    assert play(HAND, expert_plan(HAND, start_state(HAND))).won


@pytest.mark.parametrize(("actions", "expected"), [
    ([], ["go east", "take green key"]),
    (["go east"], ["go north", "go west", "open red door"]),  # the red door is locked: no way east yet
    (["go east", "go north"], ["go south", "take red key"]),
    (["go east", "go north", "take red key", "go south", "open red door"], ["go east", "go north", "go west"]),
    (["go east", "go north", "take red key", "go south", "open red door", "go east"],
     ["go west", "open blue door", "take blue key"]),
])
def test_admissible_actions_by_hand(actions, expected):
    assert admissible(HAND, play(HAND, actions)) == expected


def test_wrong_key_leaves_the_door_locked_and_wastes_the_turn():
    holding_green = play(HAND, ["take green key", "go east"])
    after, note = apply(HAND, holding_green, "open red door")
    assert after == holding_green
    assert note == "The red door is locked and you hold the green key."


def test_taking_a_key_puts_the_held_one_down_here():
    state = play(HAND, ["take green key", "go east", "go north", "take red key"])
    assert state.held == "red"
    assert ("c1", "green") in state.keys and ("0", "green") not in state.keys


@pytest.mark.parametrize(("path_a", "path_b", "same"), [
    (["go east", "go west"], [], True),  # back where it started: same state whatever the history
    (["go east", "go north", "go south"], ["go east"], True),
    (["take green key"], [], False),  # the key moved to the hand
    (["take green key", "go east", "go north", "take red key", "go south", "go west"], ["go east", "go west"],
     False),  # the green key now lies in the closet
])
def test_anchor_is_the_state_not_the_history(path_a, path_b, same):
    assert (play(HAND, path_a).anchor == play(HAND, path_b).anchor) is same


def test_describe_names_exits_door_keys_and_hand():
    assert describe(HAND, play(HAND, ["go east"])) == (
        "You are in the kitchen. Exits: west to the hall, north to the kitchen closet. "
        "A locked red door leads east. You hold nothing.")


def test_env_episode_reward_truncation_and_inadmissible_action():
    env = KeyDoorEnv(split="train", max_steps=3, expert=True)
    obs, info = env.reset(options={"task_index": 5})
    anchor = info["anchor"]
    obs, reward, terminated, truncated, info = env.step("dance")
    assert obs.startswith(NOT_ADMISSIBLE) and info["anchor"] == anchor and reward == 0.0
    env.step(info["admissible_actions"][0])
    *_, reward, terminated, truncated, info = env.step(info["admissible_actions"][0])
    assert (reward, terminated, truncated) == (0.0, False, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("go east")


def test_expert_wins_every_held_out_layout_in_8_to_20_steps():
    env = KeyDoorEnv(split="test", expert=True)
    lengths = []
    for index in range(env.num_tasks):
        _, info = env.reset(options={"task_index": index})
        for turn in range(1, 31):
            _, reward, terminated, truncated, info = env.step(info["expert_action"])
            if terminated or truncated:
                break
        assert reward == 1.0 and info["won"] and terminated and not truncated
        lengths.append(turn)
    assert 8 <= min(lengths) and max(lengths) <= 20


def test_splits_are_disjoint_and_deterministic():
    train, test = split_layouts("train"), split_layouts("test")
    assert (len(train), len(test)) == (256, 64)
    assert not {t.signature for t in train} & {t.signature for t in test}
    assert split_layouts.__wrapped__("test") == test


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"split": "valid"}, "split must be one of"),
    ({"segments": 4}, "segments must be"),
    ({"rooms_per_segment": (3, 2)}, "rooms_per_segment"),
    ({"decoys": -1}, "decoys must be"),
    ({"segments": 1, "rooms_per_segment": (1, 1), "decoys": 0}, "distinct layouts"),
])
def test_bad_settings_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KeyDoorEnv(**kwargs)


def test_registered_through_the_entry_point():
    env = make("keydoor/corridor-v0", split="test")
    assert env.num_tasks == 64 and "held-out" not in env.task_set and "test" in env.task_set
