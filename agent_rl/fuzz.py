"""Hostile actions for any `TextEnv`, and a fuzz run that checks the env contract under them.

    report = fuzz_env(lambda: make("keydoor/corridor-v0", expert=True), actions=1000, seed=0)
    report.ok, report.problems        # every step returned the 5-tuple, within its time, and the env still plays

What a model writes is not to be trusted: `step` receives it raw (the collector's parser cuts and cleans
actions, but a user's own loop or a TRL rollout hook may not). An env holds when no action raises out of
`step`, no step takes longer than `step_limit_s`, every step returns an `(str, float, bool, bool, dict)` with
the keys of `agent_rl.env_api.REQUIRED_INFO_KEYS`, and afterwards the env still resets and its expert still
wins a task. `agent-rl envs ID --fuzz N` runs it on a registered env.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from agent_rl.env_api import REQUIRED_INFO_KEYS, TextEnv

# Each generator makes one hostile action from an RNG and the admissible actions of the current state.
Generator = Callable[[random.Random, list[str]], str]
SHELL = ["; rm -rf / #", "$(cat /etc/passwd)", "`id`", "| cat /etc/shadow", "&& curl http://example.com",
         "> /dev/sda", "\n exit 1", "'\"; DROP TABLE x; --", "$((1/0))", ":(){ :|:& };:"]
# Interpreter and REPL escapes: dumb-frotz reads `\x` as its own command, shells and REPLs have theirs
ESCAPES = ["\\q", "\\x", "\\help", "look \\q", "\\\\", "\\u0000", "!ls", "%quit", ":q!", "^C", "\x1b[2J", "\x04"]
TRAVERSAL = ["../../../../etc/passwd", "..\\..\\..\\windows\\system32", "/proc/self/environ", "~/.ssh/id_rsa",
             "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "file:///etc/hosts", "/dev/zero", "....//....//etc/passwd"]
TAGS = ["<action>", "</action>", "<action><action>go</action>", "<search>", "</search><search>",
        "<answer></answer><answer>", "<think>" * 50, "<action>go east", "<![CDATA[x]]>", "<search>a</answer>"]
JSON = ['{"name": "answer", "arguments": {', '{"name": 1e999}', '[' * 10_000 + ']' * 10_000,
        '{"name": "answer", "name": "answer", "arguments": {}}', '{"arguments": null}', "null", "NaN",
        '{"name": "\\ud800", "arguments": {"x": "\\u0000"}}', '"' * 1001, '{"name": "answer", "arguments": []}']


def _random_unicode(rng: random.Random, _: list[str]) -> str:
    # any code point, lone surrogates included: they cannot even be encoded as UTF-8
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(1, 64)))


def _megabyte(rng: random.Random, admissible: list[str]) -> str:
    base = rng.choice(admissible or ["a"])
    return base + rng.choice(["A", " ", "\n", "é", base]) * (2**20 // max(1, len(base)))


def _nul_bytes(rng: random.Random, admissible: list[str]) -> str:
    base = rng.choice(admissible or ["look"])
    cut = rng.randrange(len(base) + 1)
    return base[:cut] + "\x00" * rng.randrange(1, 4) + base[cut:]


def _control_characters(rng: random.Random, _: list[str]) -> str:
    return "".join(chr(rng.randrange(32)) for _ in range(rng.randrange(1, 32))) + "\x7f\u202e\ufeff"


def _from(choices: list[str]) -> Generator:
    def pick(rng: random.Random, admissible: list[str]) -> str:
        item = rng.choice(choices)
        return rng.choice([item, f"{rng.choice(admissible or ['go'])} {item}"])
    return pick


def _mangled_admissible(rng: random.Random, admissible: list[str]) -> str:
    # near-misses of a legal action: the envs' parsers must reject them or accept them whole, never crash
    action = rng.choice(admissible or ["look"])
    forms = [action.upper(), action[: len(action) // 2], action + " " + action, "  " + action + "\t\n",
             action.replace(" ", "\x00"), action[::-1], action + "[", action.replace(" ", "   ")]
    return rng.choice(forms)


def _empty(rng: random.Random, _: list[str]) -> str:
    return rng.choice(["", " ", "\n", "\t\r\n", "\x00", "\u3000"])


GENERATORS: dict[str, Generator] = {
    "random unicode": _random_unicode, "1 MB string": _megabyte, "NUL bytes": _nul_bytes,
    "control characters": _control_characters, "malformed tags": _from(TAGS), "malformed JSON": _from(JSON),
    "shell metacharacters": _from(SHELL), "path traversal": _from(TRAVERSAL), "interpreter escapes": _from(ESCAPES),
    "mangled admissible action": _mangled_admissible, "empty": _empty,
}


@dataclass
class FuzzReport:
    """What `fuzz_env` saw: the actions stepped, the slowest step, and every break of the contract."""

    env: str
    actions: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    slowest_step_s: float = 0.0
    step_limit_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    expert_won_after: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and self.expert_won_after


def _contract_problem(result: object) -> str:
    """'' when `result` is what `step`/`reset` must return, else what is wrong with it."""
    if not isinstance(result, tuple) or len(result) not in (2, 5):
        return f"returned {type(result).__name__}, not a tuple"
    observation, info = result[0], result[-1]
    if not isinstance(observation, str):
        return f"observation is {type(observation).__name__}, not str"
    if not isinstance(info, dict):
        return f"info is {type(info).__name__}, not dict"
    missing = [key for key in REQUIRED_INFO_KEYS if key not in info]
    return f"info lacks {missing}" if missing else ""


def expert_wins(env: TextEnv, task_index: int, max_turns: int) -> bool:
    """Play `env`'s expert (`info["expert_action"]`, env made with expert=True) on one task: did it win?"""
    _, info = env.reset(seed=0, options={"task_index": task_index})
    for _ in range(max_turns):
        action = info.get("expert_action")
        if action is None:
            return False
        _, _, terminated, truncated, info = env.step(action)
        if info.get("won"):
            return True
        if terminated or truncated:
            return False
    return False


def fuzz_env(make_env: Callable[[], TextEnv], actions: int, seed: int = 0, step_limit_s: float = 10.0,
             episode_turns: int = 20, name: str = "", expert_turns: int = 60) -> FuzzReport:
    """Step `actions` hostile actions into one env (made with expert=True), resetting every `episode_turns`
    steps or when an episode ends, then check that its expert still wins task 0."""
    rng = random.Random(seed)
    env = make_env()
    report = FuzzReport(env=name or type(env).__name__, step_limit_s=step_limit_s)
    kinds = list(GENERATORS)
    try:
        admissible: list[str] = []
        turns = episode_turns
        for k in range(actions):
            if turns >= episode_turns:
                _, info = env.reset(seed=k, options={"task_index": k % env.num_tasks})
                admissible, turns = list(info.get("admissible_actions", [])), 0
            kind = kinds[k % len(kinds)]
            action = GENERATORS[kind](rng, admissible)
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
            start = time.monotonic()
            try:
                result = env.step(action)
            except Exception as err:  # noqa: BLE001 - any exception out of step is what the fuzz looks for
                report.problems.append(f"{kind} {action[:60]!r}: {type(err).__name__}: {err} "
                                       f"at {traceback.extract_tb(err.__traceback__)[-1].filename}")
                turns = episode_turns  # the env may be in any state now: start a new episode
                continue
            finally:
                elapsed = time.monotonic() - start
                report.actions += 1
                report.slowest_step_s = max(report.slowest_step_s, elapsed)
            if elapsed > step_limit_s:
                report.problems.append(f"{kind} {action[:60]!r}: step took {elapsed:.1f} s > {step_limit_s:g} s")
            problem = _contract_problem(result)
            if problem:
                report.problems.append(f"{kind} {action[:60]!r}: {problem}")
                turns = episode_turns
                continue
            admissible = list(result[-1].get("admissible_actions", []))
            turns = episode_turns if result[2] or result[3] else turns + 1
        report.expert_won_after = expert_wins(env, 0, expert_turns)
        if not report.expert_won_after:
            report.problems.append("after the fuzz the expert no longer wins task 0")
    finally:
        env.close()
    return report
