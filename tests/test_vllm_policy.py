"""The vLLM backend's parts that run without vLLM: sampling settings, reading vLLM's outputs (objects of
the shape vLLM returns, and the server's JSON), the weight-sync check, weights named for the engine,
backend selection. The engine itself is exercised by tests/test_gpu.py on a CUDA machine."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agent_rl.config import LoraSettings, TrainConfig, load_config
from agent_rl.data import Step
from agent_rl.policy.base import PolicyRequest, SyncedPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.policy.factory import make_rollout_policy
from agent_rl.policy.hf import HFPolicy
from agent_rl.policy.vllm import (
    INSTALL_HINT,
    VLLMPolicy,
    buckets,
    full_named_weights,
    max_logprob_gap,
    response_logprobs_from_prompt_logprobs,
    sample_from_request_output,
    sample_from_server_choice,
    sampling_settings,
)
from agent_rl.train.rows import build_token_rows


@dataclass
class Logprob:  # vllm.sequence.Logprob's fields
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput's fields that we read
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput's
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]


def test_sampling_settings_sample_the_full_distribution_and_return_the_sampled_logprob():
    settings = sampling_settings(0.7, 32, eos_id=5)
    assert settings == {"n": 1, "temperature": 0.7, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0,
                        "max_tokens": 32, "logprobs": 0, "stop_token_ids": [5], "skip_special_tokens": False}
    with pytest.raises(ValueError, match="temperature"):
        sampling_settings(-1.0, 32, 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sampling_settings(1.0, 0, 5)


def test_request_output_gives_the_sampled_ids_and_their_logprobs():
    result = RequestOutput([1, 2, 3], [CompletionOutput([7, 8, 5], [{7: Logprob(-0.5)}, {8: Logprob(-1.25), 9: Logprob(-0.1)},
                                                                     {5: Logprob(-2.0)}])])
    assert sample_from_request_output(result, [1, 2, 3]) == ([7, 8, 5], [-0.5, -1.25, -2.0])


def test_request_output_with_other_prompt_ids_or_no_logprobs_is_an_error():
    good = CompletionOutput([7], [{7: Logprob(-0.5)}])
    with pytest.raises(RuntimeError, match="token-in"):
        sample_from_request_output(RequestOutput([0, 1, 2, 3], [good]), [1, 2, 3])  # a BOS was added
    with pytest.raises(RuntimeError, match="logprobs=0"):
        sample_from_request_output(RequestOutput([1], [CompletionOutput([7], None)]), [1])
    with pytest.raises(RuntimeError, match="no log-prob for token 7"):
        sample_from_request_output(RequestOutput([1], [CompletionOutput([7], [{9: Logprob(-1.0)}])]), [1])


def test_server_choice_with_token_ids_is_read_exactly():
    choice = {"index": 0, "text": "", "logprobs": {"tokens": ["token_id:7", "token_id:5"],
                                                   "token_logprobs": [-0.25, -3.5], "top_logprobs": None}}
    assert sample_from_server_choice(choice) == ([7, 5], [-0.25, -3.5])
    with pytest.raises(RuntimeError, match="return_tokens_as_token_ids"):
        sample_from_server_choice({"logprobs": {"tokens": ["Hello"], "token_logprobs": [-1.0]}})
    with pytest.raises(RuntimeError, match="no token log-probs"):
        sample_from_server_choice({"logprobs": None})


@pytest.mark.parametrize("keyed", [int, str])  # vLLM objects are keyed by id, the server's JSON by the id as text
def test_prompt_logprobs_give_the_response_tokens_logprobs(keyed):
    entries = [None, {keyed(2): {"logprob": -1.0}}, {keyed(3): {"logprob": -0.5}}, {keyed(4): {"logprob": -0.25}}]
    assert response_logprobs_from_prompt_logprobs(entries, [3, 4]) == [-0.5, -0.25]
    with pytest.raises(RuntimeError, match="fewer prompt log-probs"):
        response_logprobs_from_prompt_logprobs(entries, [1, 2, 3, 4])


def test_max_logprob_gap_compares_right_aligned_response_tokens():
    # rows with responses of 2 and 3 tokens, right-aligned in 3 columns
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    trainer = torch.tensor([[0.0, -1.0, -2.0], [-0.5, -0.5, -0.5]])
    engine = [[-1.0, -2.25], [-0.5, -0.4, -0.5]]
    assert max_logprob_gap(engine, trainer, mask) == pytest.approx(0.25)
    assert max_logprob_gap([[-1.0, -2.0], [-0.5, -0.5, -0.5]], trainer, mask) == 0.0
    with pytest.raises(ValueError, match="row 0: 3 engine log-probs for 2 response tokens"):
        max_logprob_gap([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]], trainer, mask)


def test_token_rows_give_back_the_exact_prompt_and_response_ids():
    steps = [Step(obs="", anchor="", prompt="", response="", action=None, reward=0.0, valid=True,
                  prompt_ids=p, response_ids=r) for p, r in [([11, 12, 13], [21, 22]), ([31], [41, 42, 43, 44])]]
    prompts, responses = build_token_rows(steps, np.zeros(2), pad_id=0).sequences()
    assert prompts == [[11, 12, 13], [31]] and responses == [[21, 22], [41, 42, 43, 44]]


def test_buckets_bound_the_bytes_per_call():
    weights = [(f"w{i}", torch.zeros(n, dtype=torch.float32)) for i, n in enumerate([10, 10, 30, 5, 5])]  # 40, 40, 120, 20, 20 B
    assert [[name for name, _ in b] for b in buckets(weights, 80)] == [["w0", "w1"], ["w2"], ["w3", "w4"]]


def test_weights_are_named_as_in_the_checkpoint(tiny_model):
    model, _ = tiny_model
    names = dict(full_named_weights(model))
    assert names.keys() == dict(model.named_parameters()).keys()


def test_lora_weights_are_merged_under_the_base_names_leaving_the_base_as_it_was(tiny_model_dir: Path):
    pytest.importorskip("peft")
    from agent_rl.policy.hf import load_model_and_tokenizer

    plain, _ = load_model_and_tokenizer(str(tiny_model_dir))
    model, _ = load_model_and_tokenizer(str(tiny_model_dir), lora=LoraSettings(enabled=True, r=2, alpha=4))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained adapter (peft starts B at zero)
    q_lora = model.get_base_model().model.layers[0].self_attn.q_proj
    before = q_lora.base_layer.weight.detach().clone()
    merged = {name: tensor.clone() for name, tensor in full_named_weights(model)}
    assert merged.keys() == dict(plain.named_parameters()).keys()  # no lora_*, no base_layer in the names
    delta = (q_lora.lora_B["default"].weight @ q_lora.lora_A["default"].weight) * q_lora.scaling["default"]
    assert torch.allclose(merged["model.layers.0.self_attn.q_proj.weight"], before + delta, atol=1e-6)
    assert torch.equal(q_lora.base_layer.weight, before)  # merged out of place: no rounding drift per sync


class FakeEngine:
    """An engine that answers from a table, to check VLLMPolicy's plumbing (the real engine: tests/test_gpu.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[list[int]], dict[str, Any]]] = []
        self.loaded: list[Any] = []
        self.slept = 0

    def generate(self, prompt_ids: list[list[int]], settings: dict[str, Any]) -> list[tuple[list[int], list[float]]]:
        self.calls.append((prompt_ids, settings))
        return [([len(ids), settings["stop_token_ids"][0]], [-0.5, -1.5]) for ids in prompt_ids]

    def score(self, sequences: list[list[int]]) -> list[list[dict[int, Logprob] | None]]:
        return [[None] + [{t: Logprob(-float(t))} for t in seq[1:]] for seq in sequences]

    def load(self, model: Any) -> None:
        self.loaded.append(model)

    def sleep(self) -> None:
        self.slept += 1


def test_vllm_policy_sends_codec_ids_and_returns_token_level_outputs(tiny_model):
    _, tokenizer = tiny_model
    engine = FakeEngine()
    policy = VLLMPolicy(engine, ChatCodec(tokenizer), temperature=0.7, max_new_tokens=16)
    requests = [PolicyRequest([{"role": "user", "content": text}]) for text in ("go north", "take the red apple")]
    outputs = policy.act(requests)
    codec = ChatCodec(tokenizer)
    sent, settings = engine.calls[0]
    assert sent == [codec.encode_prompt(r.messages)[1] for r in requests]
    assert settings["temperature"] == 0.7 and settings["max_tokens"] == 16
    assert [o.prompt_ids for o in outputs] == sent
    assert [o.token_ids for o in outputs] == [[len(ids), tokenizer.eos_token_id] for ids in sent]
    assert all(o.logprobs == [-0.5, -1.5] for o in outputs)
    assert policy.logprob_temperature == 0.7 and policy.with_temperature(0.0).logprob_temperature == 1.0
    assert policy.with_temperature(0.0).engine is engine and policy.act([]) == []
    assert policy.score([[1, 2]], [[3, 4]]) == [[-3.0, -4.0]]
    assert isinstance(policy, SyncedPolicy)


def test_hf_policy_is_not_a_synced_policy(tiny_policy):
    assert not isinstance(tiny_policy, SyncedPolicy)


def test_the_config_selects_the_backend(tiny_model, monkeypatch: pytest.MonkeyPatch):
    model, tokenizer = tiny_model
    assert isinstance(make_rollout_policy(TrainConfig(), model, tokenizer), HFPolicy)
    monkeypatch.setitem(sys.modules, "vllm", None)  # as on a machine without the gpu extra
    config = load_config(None, ["policy.backend=vllm"])
    with pytest.raises(ImportError, match=r"pip install 'agent-rl\[gpu\]'") as err:
        make_rollout_policy(config, model, tokenizer)
    assert str(err.value) == INSTALL_HINT


@pytest.mark.parametrize("override, message", [
    ("policy.backend=sglang", "policy.backend must be one of ['hf', 'vllm'], got 'sglang'"),
    ("policy.vllm.placement=remote", "policy.vllm.placement must be one of ['colocated', 'split']"),
    ("policy.vllm.gpu_memory_utilization=1.5", "policy.vllm.gpu_memory_utilization must be in (0, 1]"),
    ("policy.vllm.tensor_parallel_size=0", "policy.vllm.tensor_parallel_size must be > 0"),
    ("train.mixed_precision=fp16", "train.mixed_precision must be one of ['no', 'bf16'], got 'fp16'"),
    ("policy.vllm.gpu_util=0.5", "Key 'gpu_util' not in 'VLLMSettings'"),
])
def test_bad_backend_settings_are_one_line_errors(override: str, message: str):
    with pytest.raises(ValueError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_logprob_gap_of_the_hf_policy_against_the_trainer_is_numerical_noise(tiny_model):
    """The check the trainer runs after a vLLM sync, on the HF policy's own rollout: a baseline for its scale."""
    from agent_rl.train.losses import batch_response_logprobs

    model, tokenizer = tiny_model
    torch.manual_seed(0)
    outputs = HFPolicy(model, tokenizer, 1.0, 8).act([PolicyRequest([{"role": "user", "content": "go north"}])] * 3)
    steps = [Step(obs="", anchor="", prompt="", response="", action=None, reward=0.0, valid=True,
                  prompt_ids=o.prompt_ids, response_ids=o.token_ids, logprobs=o.logprobs) for o in outputs]
    rows = build_token_rows(steps, np.zeros(3), tokenizer.pad_token_id)
    trainer = batch_response_logprobs(model, rows, 3)
    gap = max_logprob_gap([o.logprobs for o in outputs], trainer, rows.response_mask)
    assert gap < 1e-4 and not math.isnan(gap)
