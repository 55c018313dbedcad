"""Policies on the tiny model: token-in/token-out ids, rollout log-probs == trainer log-probs, loading errors, LoRA."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from agent_rl.config import LoraSettings
from agent_rl.data import Step
from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.baselines import ExpertPolicy, RandomPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.policy.hf import HFPolicy, load_model_and_tokenizer
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.rollout.parsing import format_action
from agent_rl.train.losses import response_logprobs
from agent_rl.train.rows import build_token_rows


def requests_of_different_lengths(count: int = 6) -> list[PolicyRequest]:
    """Prompts built by the memory whose token lengths all differ (so the batch is left-padded)."""
    memory = HistoryMemory(window=2)
    history = [(f"You are in the kitchen, step {i}.", "open chest") for i in range(4)]
    return [
        PolicyRequest(memory.messages("take the red apple", history[:k % 4], "You see a red apple." * (1 + k),
                                      ["take red apple", "look"][: 1 + k % 2]))
        for k in range(count)
    ]


def eos_prone(model: torch.nn.Module, eos_id: int, bias: float) -> torch.nn.Module:
    """A copy of `model` whose output layer adds `bias` to the EOS logit, so sampled responses end at
    different lengths (the random-init model almost never samples EOS on its own)."""
    model = copy.deepcopy(model)
    weight = model.lm_head.weight
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=True)
    head.weight = weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[eos_id] = bias
    model.lm_head = head
    return model


def chat_template_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)


def steps_from(outputs: list[PolicyOutput]) -> list[Step]:
    return [Step(obs="", anchor="", prompt=o.prompt_text, response=o.text, action=None, reward=0.0, valid=True,
                 prompt_ids=o.prompt_ids, response_ids=o.token_ids, logprobs=o.logprobs) for o in outputs]


def test_prompt_ids_are_the_chat_template_encoding(tiny_policy):
    requests = requests_of_different_lengths(3)
    outputs = tiny_policy.act(requests)
    tokenizer = tiny_policy.codec.tokenizer
    for request, output in zip(requests, outputs):
        assert output.prompt_ids == chat_template_ids(tokenizer, request.messages)
        assert output.prompt_text == tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                                   tokenize=False)
        assert output.prompt_text.endswith("<|assistant|>\n")
        assert tokenizer.pad_token_id not in output.prompt_ids  # left padding is not part of the prompt


def test_token_ids_end_at_eos_or_at_max_new_tokens(tiny_model):
    model, tokenizer = tiny_model
    eos = tokenizer.eos_token_id
    policy = HFPolicy(eos_prone(model, eos, bias=5.0), tokenizer, temperature=1.0, max_new_tokens=6)
    torch.manual_seed(0)
    outputs = policy.act(requests_of_different_lengths(12))
    ended = [o for o in outputs if o.token_ids and o.token_ids[-1] == eos]
    for o in outputs:
        assert 1 <= len(o.token_ids) <= 6
        assert eos not in o.token_ids[:-1]  # nothing after the first EOS is kept
        assert o.token_ids[-1] == eos or len(o.token_ids) == 6
        assert len(o.logprobs) == len(o.token_ids) == len(o.entropy)
        assert all(lp <= 0.0 for lp in o.logprobs) and all(e >= 0.0 for e in o.entropy)
        assert o.text == tokenizer.decode(o.token_ids, skip_special_tokens=True)
    assert ended and len(ended) < len(outputs), "the case needs both kinds of ending; change the bias"


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_logprobs_equal_the_trainer_recomputation(tiny_model, temperature: float):
    model, tokenizer = tiny_model
    model = eos_prone(model, tokenizer.eos_token_id, bias=5.0 * temperature)  # p(EOS) ~ 0.2 per token
    policy = HFPolicy(model, tokenizer, temperature=temperature, max_new_tokens=10)
    torch.manual_seed(1)
    outputs = policy.act(requests_of_different_lengths(6))
    assert len({len(o.prompt_ids) for o in outputs}) == 6  # every prompt padded differently
    assert len({len(o.token_ids) for o in outputs}) > 1  # and responses of different lengths
    rows = build_token_rows(steps_from(outputs), np.zeros(len(outputs)), tokenizer.pad_token_id)
    with torch.no_grad():
        recomputed = response_logprobs(model, rows, temperature=policy.logprob_temperature)
    mask = rows.response_mask.bool()
    assert recomputed.shape == rows.old_logprobs.shape
    assert torch.allclose(recomputed[mask], rows.old_logprobs[mask], atol=1e-4), \
        float((recomputed - rows.old_logprobs)[mask].abs().max())
    # each row recomputed alone (no padding at all) agrees too
    for row, output in enumerate(outputs):
        alone = build_token_rows(steps_from([output]), np.zeros(1), tokenizer.pad_token_id)
        with torch.no_grad():
            single = response_logprobs(model, alone, temperature=policy.logprob_temperature)[0]
        assert torch.allclose(single, torch.tensor(output.logprobs), atol=1e-4)


def test_greedy_decoding_picks_the_argmax_and_reports_untempered_logprobs(tiny_model):
    model, tokenizer = tiny_model
    policy = HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=5)
    assert policy.logprob_temperature == 1.0
    outputs = policy.act(requests_of_different_lengths(3))
    assert outputs == policy.act(requests_of_different_lengths(3))  # deterministic
    rows = build_token_rows(steps_from(outputs), np.zeros(3), tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                       position_ids=rows.position_ids).logits[:, -6:-1]
    chosen = rows.input_ids[:, -5:]
    assert torch.equal(logits.argmax(-1), chosen)
    assert torch.allclose(torch.log_softmax(logits, -1).max(-1).values, rows.old_logprobs, atol=1e-4)


def test_policy_rejects_negative_temperature_and_answers_no_requests(tiny_model):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        HFPolicy(model, tokenizer, temperature=-0.1)
    assert HFPolicy(model, tokenizer).act([]) == []


def test_act_restores_the_training_mode(tiny_policy):
    tiny_policy.model.train()
    tiny_policy.act(requests_of_different_lengths(1))
    assert tiny_policy.model.training
    tiny_policy.model.eval()
    tiny_policy.act(requests_of_different_lengths(1))
    assert not tiny_policy.model.training


# --- reference policies ---------------------------------------------------------------------------------


def test_expert_policy_with_a_codec_gives_ids_that_decode_back(tiny_model):
    _, tokenizer = tiny_model
    codec = ChatCodec(tokenizer)
    requests = [PolicyRequest(r.messages, info={"expert_action": action})
                for r, action in zip(requests_of_different_lengths(3),
                                     ["take red apple from table", "open wooden chest", "go east"])]
    outputs = ExpertPolicy(codec).act(requests)
    for request, output in zip(requests, outputs):
        assert output.text == format_action(request.info["expert_action"])
        assert output.token_ids[-1] == tokenizer.eos_token_id  # SFT teaches the model to stop
        assert tokenizer.eos_token_id not in output.token_ids[:-1]
        assert codec.decode_response(output.token_ids) == output.text
        assert output.prompt_ids == chat_template_ids(tokenizer, request.messages)
        assert output.logprobs == []
    assert "<action>" in tokenizer.get_vocab()  # the protocol tag is one token
    assert codec.encode_response("<action>look</action>")[0] == tokenizer.convert_tokens_to_ids("<action>")


def test_expert_policy_without_codec_and_without_expert_info():
    request = PolicyRequest([{"role": "user", "content": "x"}], info={"expert_action": "look"})
    assert ExpertPolicy().act([request]) == [PolicyOutput(text="<action>look</action>")]
    with pytest.raises(ValueError, match="expert=True"):
        ExpertPolicy().act([PolicyRequest([], info={})])


def test_random_policy_picks_admissible_actions_reproducibly():
    request = PolicyRequest([], info={"admissible_actions": ["go east", "go west", "look"]})
    first = [o.text for o in RandomPolicy(seed=4).act([request] * 30)]
    assert first == [o.text for o in RandomPolicy(seed=4).act([request] * 30)]
    assert set(first) == {"<action>go east</action>", "<action>go west</action>", "<action>look</action>"}
    with pytest.raises(ValueError, match="admissible_actions"):
        RandomPolicy().act([PolicyRequest([], info={})])


# --- loading, chat codec, LoRA ----------------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True])
def test_missing_model_path_raises_file_not_found(tmp_path: Path, monkeypatch, relative: bool):
    monkeypatch.chdir(tmp_path)
    path = "./no_such_model" if relative else str(tmp_path / "no_such_model")
    with pytest.raises(FileNotFoundError, match="model path .*no_such_model.* does not exist"):
        load_model_and_tokenizer(path)


def test_missing_gguf_file_raises_file_not_found(tiny_model_dir: Path):
    with pytest.raises(FileNotFoundError, match="GGUF file 'model.gguf' not found"):
        load_model_and_tokenizer(str(tiny_model_dir / "model.gguf"))


def test_folder_without_a_model_raises_file_not_found(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model_and_tokenizer(str(tmp_path))


def test_loaded_tiny_model_matches_its_build(tiny_model_dir: Path, tiny_model):
    model, tokenizer = tiny_model
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert 550 <= len(tokenizer) <= 610 and model.config.vocab_size == len(tokenizer)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.device.type == "cpu" and next(model.parameters()).dtype == torch.float32


def test_lora_wraps_the_model_and_only_adapters_train(tiny_model_dir: Path):
    pytest.importorskip("peft")
    from peft import PeftModel

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), lora=LoraSettings(enabled=True, r=4))
    assert isinstance(model, PeftModel)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    # 2 layers x 4 projections x (A, B)
    assert len(trainable) == 16 and all("lora_A" in n or "lora_B" in n for n in trainable)
    assert any("embed_tokens" in n for n in frozen) and not any("lora_" in n for n in frozen)
    # the wrapped model serves as a policy and its log-probs agree with the trainer's, too
    policy = HFPolicy(model, tokenizer, temperature=1.0, max_new_tokens=4)
    outputs = policy.act(requests_of_different_lengths(2))
    rows = build_token_rows(steps_from(outputs), np.zeros(2), tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(response_logprobs(model, rows), rows.old_logprobs, atol=1e-4)


def test_lora_disabled_returns_the_plain_model(tiny_model_dir: Path):
    model, _ = load_model_and_tokenizer(str(tiny_model_dir), lora=LoraSettings(enabled=False))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert all(p.requires_grad for p in model.parameters())


def test_chat_codec_needs_a_chat_template_and_an_eos(tiny_model):
    _, tokenizer = tiny_model
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        ChatCodec(no_template)
    no_eos = copy.deepcopy(tokenizer)
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="no EOS token"):
        ChatCodec(no_eos)
    with pytest.raises(ValueError, match="no chat template"):
        HFPolicy(torch.nn.Linear(1, 1), no_template)  # the policy fails at construction, not mid-rollout


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                                 "parameters": {"type": "object", "properties": {}}}}


def test_tools_are_rendered_natively_only_by_a_template_with_function_calling(tiny_model):
    _, tokenizer = tiny_model
    messages = [{"role": "user", "content": "weather in Paris?"}]
    plain = ChatCodec(tokenizer)
    assert not plain.renders_tools
    assert plain.encode_prompt(messages, [WEATHER_TOOL]) == plain.encode_prompt(messages)
    native = copy.deepcopy(tokenizer)
    native.chat_template = (
        "{% if tools %}<|tools|>{% for t in tools %}{{ t.function.name }};{% endfor %}{% endif %}"
        + tokenizer.chat_template
    )
    codec = ChatCodec(native)
    text, ids = codec.encode_prompt(messages, [WEATHER_TOOL])
    assert codec.renders_tools and text.startswith("<|tools|>get_weather;")
    assert codec.encode_prompt(messages)[0] == plain.encode_prompt(messages)[0]  # no tools, nothing added
    assert ids == native(text, add_special_tokens=False)["input_ids"]
