"""A transformers causal LM as a batched policy: one `generate` call per turn for every live episode."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.config import LoraSettings
from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.chat import ChatCodec

MODEL_MARKERS = ("config.json", "adapter_config.json")  # a model directory, or a peft (LoRA) adapter directory
_HUB_ID = re.compile(r"(?:[\w.-]+/)?[\w.-]+")


def holds_model(path: str | Path) -> bool:
    """Whether a directory holds a saved model or a peft adapter (what `save_pretrained` leaves)."""
    return any((Path(path) / name).is_file() for name in MODEL_MARKERS)


def looks_like_hub_id(path: str) -> bool:
    """`name` or `org/name`, as the hub spells repository ids; `./x`, `../x`, `~/x`, `/x`, `a/b/c` are paths."""
    return (bool(_HUB_ID.fullmatch(path)) and not path.startswith((".", "-")) and ".." not in path
            and "--" not in path and len(path) <= 96)


def resolve_known_model(path: str) -> str | Path:
    """A known model's name (`agent-rl models list`) is its cached checkpoint; any other path is kept."""
    from agent_rl.policy.fetch import KNOWN_MODELS, model_dir

    if path not in KNOWN_MODELS or Path(path).exists():
        return path
    cached = model_dir(path)
    if not (cached / "config.json").is_file():
        raise FileNotFoundError(f"model {path!r} is not cached yet: run `agent-rl models fetch {path}`")
    return cached


def check_model_path(path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(model path, GGUF file name) as `load_model_and_tokenizer` reads them, or FileNotFoundError saying what is
    wrong: callers run it before anything slow starts, so a mistyped path fails at once."""
    path = str(resolve_known_model(path))
    if path.endswith(".gguf"):
        path, gguf_file = str(Path(path).parent), Path(path).name
    local = Path(path).expanduser()
    if not local.exists() and not looks_like_hub_id(path):
        # fail now: transformers would try the hub with it, retrying for most of a minute offline
        raise FileNotFoundError(
            f"model path {path!r} does not exist; give a model directory, a .gguf file, or a hub name (org/name)"
        )
    if gguf_file and not (local / gguf_file).exists():
        raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {path!r}")
    if local.exists() and not gguf_file:
        if not local.is_dir():
            raise FileNotFoundError(f"model path {path!r} is a file; give a model directory, a .gguf file, or a hub name")
        if not holds_model(local):
            raise FileNotFoundError(f"there is no model in {path}: config.json missing (give a model directory, "
                                    "a training checkpoint, or a .gguf file)")
    return path, gguf_file


def load_model_and_tokenizer(
    path: str,
    gguf_file: str | None = None,
    lora: LoraSettings | None = None,
    dtype: str = "float32",
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any causal LM transformers can: a local directory, a hub name (network allowed), or a GGUF file.

    A known model's name (`smollm2-135m`, see `agent_rl.policy.fetch`) means its cached checkpoint.
    A path ending in `.gguf` is read as `gguf_file` inside its directory (transformers dequantises it).
    A path that exists is local, and must hold a model (config.json); one that does not exist is a hub
    name only if it looks like one (`name` or `org/name`), otherwise FileNotFoundError at once.
    """
    path, gguf_file = check_model_path(path, gguf_file)
    local = Path(path).expanduser()
    if local.exists():
        path = str(local)  # with ~ expanded
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        if (Path(path) / "adapter_config.json").is_file() and not (Path(path) / "config.json").is_file():
            return _load_adapter(path, dtype, device), _with_pad(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
    except OSError as err:
        offline = " (this machine is offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise FileNotFoundError(f"could not load model {path!r}{offline}: {err}") from err
    tokenizer = _with_pad(tokenizer)
    if lora is not None and lora.enabled:
        from peft import LoraConfig, get_peft_model  # optional extra: agent-rl[lora]

        model = get_peft_model(
            model,
            LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                       target_modules=list(lora.target_modules), task_type="CAUSAL_LM"),
        )
    return model.to(device), tokenizer


def _with_pad(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs a pad id; pads are masked anyway
    return tokenizer


def _load_adapter(path: str, dtype: str, device: str) -> PreTrainedModel:
    """A saved LoRA adapter (an SFT stage, a checkpoint) on its base model, its adapters trainable.

    transformers' own adapter loading freezes the adapters, so an RL stage started from an SFT adapter
    would train nothing; peft's `is_trainable=True` keeps them trainable, the base frozen.
    """
    from peft import PeftConfig, PeftModel  # optional extra: agent-rl[lora]

    base_path = PeftConfig.from_pretrained(path).base_model_name_or_path
    base, _ = load_model_and_tokenizer(str(base_path), dtype=dtype, device=device)
    return PeftModel.from_pretrained(base, path, is_trainable=True).to(device)


class HFPolicy:
    """Samples responses and records the exact prompt ids, sampled ids and their log-probs.

    Log-probs are taken under the distribution that was sampled from (logits / temperature, no
    top-k / top-p truncation), which is the distribution the trainer recomputes: PPO ratios start at 1.
    With temperature 0 decoding is greedy and log-probs are those of the untempered model.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        temperature: float = 1.0,
        max_new_tokens: int = 64,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model = model
        self.codec = ChatCodec(tokenizer)
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens

    @property
    def logprob_temperature(self) -> float:
        return self.temperature if self.temperature > 0 else 1.0

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        return self.generate([self.codec.encode_prompt(r.messages, r.info.get("tools")) for r in requests])

    @torch.no_grad()
    def generate(self, prompts: list[tuple[str, list[int]]]) -> list[PolicyOutput]:
        """One sampled response to each (prompt text, prompt ids); the ids are fed exactly as given."""
        if not prompts:
            return []
        tokenizer = self.codec.tokenizer
        width = max(len(ids) for _, ids in prompts)
        pad = tokenizer.pad_token_id
        device = self.model.device
        # Left padding keeps every prompt's last token at the same column for batched decoding.
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in prompts], device=device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids in prompts], device=device)
        sampling = self.temperature > 0
        was_training = self.model.training
        self.model.eval()
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=sampling,
            temperature=self.temperature if sampling else None,
            top_k=0 if sampling else None,
            top_p=1.0 if sampling else None,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        self.model.train(was_training)
        new_ids = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1).float() / self.logprob_temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        token_logp = logp_all.gather(-1, new_ids.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        outputs = []
        for row, (prompt_text, prompt_ids) in enumerate(prompts):
            ids = new_ids[row].tolist()
            length = _length_through_eos(ids, tokenizer.eos_token_id)
            ids = ids[:length]
            outputs.append(
                PolicyOutput(
                    text=self.codec.decode_response(ids),
                    prompt_text=prompt_text,
                    prompt_ids=prompt_ids,
                    token_ids=ids,
                    logprobs=token_logp[row, :length].tolist(),
                    entropy=entropy[row, :length].tolist(),
                )
            )
        return outputs


def _length_through_eos(ids: list[int], eos: int) -> int:
    """Length of a sampled row up to and including its first EOS (the tokens after it are padding)."""
    return ids.index(eos) + 1 if eos in ids else len(ids)
