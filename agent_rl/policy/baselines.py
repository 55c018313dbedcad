"""Reference policies that need no model: the env's expert and a uniformly random player."""

from __future__ import annotations

import random

from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.chat import ChatCodec
from agent_rl.rollout.protocols import TAGS, ResponseProtocol


class ExpertPolicy:
    """Plays `info["expert_action"]`, which envs provide when made with `expert=True`.

    Given a `ChatCodec`, it also records prompt and response token ids, so its episodes are
    supervised fine-tuning data for that model (the ids stored are the ids trained).
    """

    needs_expert = True

    def __init__(self, codec: ChatCodec | None = None, protocol: ResponseProtocol = TAGS) -> None:
        self.codec = codec
        self.protocol = protocol  # the response format the demonstrations teach

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        outputs = []
        for request in requests:
            if "expert_action" not in request.info:
                raise ValueError("the env gives no info['expert_action']: make it with expert=True")
            text = self.protocol.format(request.info["expert_action"])
            if self.codec is None:
                outputs.append(PolicyOutput(text=text))
                continue
            prompt_text, prompt_ids = self.codec.encode_prompt(request.messages, request.info.get("tools"))
            outputs.append(PolicyOutput(text=text, prompt_text=prompt_text, prompt_ids=prompt_ids,
                                        token_ids=self.codec.encode_response(text)))
        return outputs


class RandomPolicy:
    """Picks uniformly among the admissible actions (a lower bound every trained agent must beat)."""

    needs_expert = False

    def __init__(self, seed: int = 0, protocol: ResponseProtocol = TAGS) -> None:
        self.rng = random.Random(seed)
        self.protocol = protocol

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        outputs = []
        for request in requests:
            actions = request.info.get("admissible_actions")
            if not actions:
                raise ValueError("the random policy needs info['admissible_actions'], which this env does not give")
            outputs.append(PolicyOutput(text=self.protocol.format(self.rng.choice(actions))))
        return outputs
