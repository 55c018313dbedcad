"""vLLM as the rollout engine: one batched call per turn on token ids, weights pushed from the trainer.

Token-in/token-out: prompts go to vLLM as the ids our `ChatCodec` made (`TokensPrompt`, the engine
runs without a tokenizer), and the ids and log-probs it sampled come back as they are. Log-probs are
those of the distribution sampled from (`logprobs_mode="processed_logprobs"`: logits / temperature,
no top-k / top-p), as `HFPolicy` reports them and the trainer recomputes them.

Two placements (`policy.vllm.placement`):
- colocated: an in-process `vllm.LLM` on each training GPU, taking `gpu_memory_utilization` of it and
  sleeping (memory freed) while the trainer updates. After every update the trainer's weights are
  streamed into the engine's model (`LLM.collective_rpc` running `load_weights` on the worker), in
  buckets, then the prefix cache is reset: cached KV of the old weights must not be reused.
- split: a `vllm serve` server on other GPUs (an OpenAI-compatible API). The policy trains LoRA
  adapters; after every update the adapter is saved to `sync_dir` and loaded with vLLM's documented
  `POST /v1/load_lora_adapter` (server started with `--enable-lora` and
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`); requests then name the new adapter.

After a sync, `check_sync` scores tokens through the engine (prompt log-probs) and compares them with
the trainer's: `max_logprob_gap` is the number to watch (bf16 noise is ~1e-2; a wrong sync is >> 1).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.config import VLLMSettings
from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.chat import ChatCodec

INSTALL_HINT = "policy.backend=vllm needs vLLM on a CUDA machine: pip install 'agent-rl[gpu]'"
SYNC_BUCKET_BYTES = 1 << 30  # weights handed to the engine per call: bounds the extra GPU memory of a sync
# names the training engines put around a module's own (FSDP1, activation checkpointing, DDP, peft)
_WRAPPER_PARTS = re.compile(r"(_fsdp_wrapped_module\.|_checkpoint_wrapped_module\.|^module\.|\.base_layer)")


def require_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return vllm


# --- the parts that need no vLLM: sampling settings, reading its outputs, the sync check --------------------


def sampling_settings(temperature: float, max_new_tokens: int, eos_id: int) -> dict[str, Any]:
    """`SamplingParams` keyword arguments for rollouts (and the same fields for the server's API).

    The full distribution at `temperature` (top_p 1, no penalties: what the trainer scores), one
    sample per request (a group's G rollouts are G requests), the sampled token's log-prob
    (`logprobs=0`: no alternatives), stop at the model's EOS only, no detokenization (we decode).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    return {"n": 1, "temperature": temperature, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0,
            "max_tokens": max_new_tokens, "logprobs": 0, "stop_token_ids": [eos_id], "skip_special_tokens": False}


def _logprob_of(entry: Mapping[Any, Any], token: int) -> float:
    """The log-prob of `token` in one position's entry: vLLM's {id: Logprob} or the server's JSON {"id": {...}}."""
    found = entry.get(token, entry.get(str(token)))
    if found is None:
        raise RuntimeError(f"vLLM returned no log-prob for token {token}; the engine ran with logprobs disabled")
    return float(found["logprob"] if isinstance(found, Mapping) else found.logprob)


Sample = tuple[list[int], list[float]]  # the sampled token ids and their log-probs


def sample_from_request_output(result: Any, prompt_ids: list[int]) -> Sample:
    """Ids and log-probs from a vLLM `RequestOutput` (its first `CompletionOutput`: `token_ids`, and
    `logprobs`, one {id: Logprob} per token); the engine must have seen exactly `prompt_ids`."""
    if result.prompt_token_ids is not None and list(result.prompt_token_ids) != list(prompt_ids):
        raise RuntimeError("vLLM changed the prompt token ids (e.g. added a BOS); rollouts must be token-in")
    completion = result.outputs[0]
    tokens = [int(t) for t in completion.token_ids]
    if completion.logprobs is None or len(completion.logprobs) != len(tokens):
        raise RuntimeError("vLLM returned no per-token log-probs; sampling needs logprobs=0")
    return tokens, [_logprob_of(entry, token) for entry, token in zip(completion.logprobs, tokens, strict=True)]


_TOKEN_ID = re.compile(r"token_id:(\d+)")


def sample_from_server_choice(choice: Mapping[str, Any]) -> Sample:
    """Ids and log-probs from one choice of vLLM's /v1/completions, asked with `return_tokens_as_token_ids`."""
    logprobs = choice.get("logprobs") or {}
    names, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if names is None or values is None:
        raise RuntimeError("the server returned no token log-probs; send logprobs=0 and return_tokens_as_token_ids")
    tokens = []
    for name in names:
        match = _TOKEN_ID.fullmatch(name)
        if match is None:
            raise RuntimeError(f"the server returned token {name!r} as text; it must honour return_tokens_as_token_ids")
        tokens.append(int(match.group(1)))
    return tokens, [float(v) for v in values]


def response_logprobs_from_prompt_logprobs(entries: Sequence[Mapping[Any, Any] | None],
                                           response_ids: Sequence[int]) -> list[float]:
    """The log-probs of the last `len(response_ids)` prompt tokens, from vLLM's prompt log-probs of prompt + response."""
    tail = entries[len(entries) - len(response_ids):]
    if len(tail) != len(response_ids) or any(e is None for e in tail):
        raise RuntimeError("vLLM returned fewer prompt log-probs than response tokens")
    return [_logprob_of(entry, token) for entry, token in zip(tail, response_ids, strict=True)]  # type: ignore[arg-type]


def max_logprob_gap(engine: Sequence[Sequence[float]], trainer: torch.Tensor, mask: torch.Tensor) -> float:
    """max |engine log-prob − trainer log-prob| over the masked tokens.

    `trainer` and `mask` are (rows, R) with each row's response right-aligned (as `TokenRows`); `engine`
    holds each row's response log-probs in order.
    """
    gap = 0.0
    for row, values in enumerate(engine):
        columns = mask[row].nonzero().flatten()
        if len(columns) != len(values):
            raise ValueError(f"row {row}: {len(values)} engine log-probs for {len(columns)} response tokens")
        if len(values):
            diff = (torch.tensor(values, dtype=torch.float64) - trainer[row, columns].double()).abs().max()
            gap = max(gap, float(diff))
    return gap


# --- the trainer's weights, as the engine's checkpoint names them ------------------------------------------------


@torch.no_grad()
def full_named_weights(model: PreTrainedModel) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) of every weight, named as in a transformers checkpoint.

    A LoRA layer's weight is its base weight plus the adapters' delta (peft `get_delta_weight`),
    computed out of place: merging into the base and unmerging would drift it by rounding at every
    sync. FSDP2 shards are gathered one tensor at a time (`full_tensor`), ZeRO-3 partitions one
    parameter at a time; every rank must iterate in step, the gathers being collectives.
    """
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    lora_layers = {f"{name}.base_layer.weight": module for name, module in base.named_modules()
                   if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")}
    for name, param in base.named_parameters():
        if "lora_" in name:
            continue
        tensor = _gathered(param)
        layer = lora_layers.get(name)
        if layer is not None:
            tensor = tensor + sum(layer.get_delta_weight(a) for a in layer.active_adapters).to(tensor.dtype)
        yield _WRAPPER_PARTS.sub("", name), tensor


def _gathered(param: torch.Tensor) -> torch.Tensor:
    if hasattr(param, "full_tensor"):  # a DTensor (FSDP2)
        return param.full_tensor().detach()
    if hasattr(param, "ds_id"):  # a ZeRO-3 partition
        import deepspeed

        with deepspeed.zero.GatheredParameters([param]):
            return param.data.detach().clone()
    return param.detach()


def buckets(weights: Iterable[tuple[str, torch.Tensor]], limit: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Consecutive groups of weights of at most `limit` bytes each (a larger tensor goes alone)."""
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in weights:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket


# --- engines ------------------------------------------------------------------------------------------------------


class Engine(Protocol):
    def generate(self, prompt_ids: list[list[int]], settings: dict[str, Any]) -> list[Sample]: ...
    def score(self, sequences: list[list[int]]) -> list[Sequence[Mapping[Any, Any] | None]]: ...
    def load(self, model: PreTrainedModel) -> None: ...
    def sleep(self) -> None: ...


def _load_weights_on_worker(worker: Any, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Runs inside the vLLM worker (`LLM.collective_rpc`): the model's own loader maps names and shards."""
    worker.model_runner.get_model().load_weights(weights=weights)


class LocalEngine:
    """An in-process `vllm.LLM` (colocated placement)."""

    def __init__(self, model_path: str, dtype: str, settings: VLLMSettings, seed: int, distributed: bool) -> None:
        vllm = require_vllm()
        # The engine core runs in this process, so collective_rpc hands the worker our tensors by reference.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        extra: dict[str, Any] = {}
        if distributed:  # one engine per rank inside the launcher's process group (torchrun / accelerate launch)
            extra["distributed_executor_backend"] = "external_launcher"
        self.llm = vllm.LLM(
            model=model_path, dtype=dtype, seed=seed, skip_tokenizer_init=True, generation_config="vllm",
            gpu_memory_utilization=settings.gpu_memory_utilization,
            tensor_parallel_size=settings.tensor_parallel_size, max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager, enable_sleep_mode=settings.sleep_during_update,
            logprobs_mode="processed_logprobs", enable_prefix_caching=True, **extra,
        )
        self.can_sleep = settings.sleep_during_update
        self.sleeping = False

    def _wake(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def generate(self, prompt_ids: list[list[int]], settings: dict[str, Any]) -> list[Sample]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._wake()
        params = SamplingParams(**settings, detokenize=False)
        results = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], params, use_tqdm=False)
        return [sample_from_request_output(r, ids) for r, ids in zip(results, prompt_ids, strict=True)]

    def score(self, sequences: list[list[int]]) -> list[Sequence[Mapping[Any, Any] | None]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._wake()
        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        results = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in sequences], params, use_tqdm=False)
        return [r.prompt_logprobs for r in results]

    def load(self, model: PreTrainedModel) -> None:
        self._wake()
        for bucket in buckets(full_named_weights(model), SYNC_BUCKET_BYTES):
            self.llm.collective_rpc(_load_weights_on_worker, args=(bucket,))
        self.llm.reset_prefix_cache()  # cached KV was computed by the old weights

    def sleep(self) -> None:
        if self.can_sleep and not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True


class ServerEngine:
    """A `vllm serve` server reached over HTTP (split placement); LoRA adapters carry the weights."""

    def __init__(self, url: str, base_model: str, sync_dir: str, timeout_s: float) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)
        self.model_name = base_model  # the base weights until the first adapter is loaded
        self.sync_dir = Path(sync_dir)
        self.version = 0

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as err:  # a timeout included: an error, never a silent hang
            raise RuntimeError(f"vLLM server {self.client.base_url}{path}: {err!r}") from err
        if response.status_code != 200:
            raise RuntimeError(f"vLLM server {path} answered {response.status_code}: {response.text[:300]}")
        return response

    def generate(self, prompt_ids: list[list[int]], settings: dict[str, Any]) -> list[Sample]:
        body = {"model": self.model_name, "prompt": prompt_ids, "return_tokens_as_token_ids": True, **settings}
        choices = self._post("/v1/completions", body).json()["choices"]
        return [sample_from_server_choice(c) for c in sorted(choices, key=lambda c: c["index"])]

    def score(self, sequences: list[list[int]]) -> list[Sequence[Mapping[Any, Any] | None]]:
        body = {"model": self.model_name, "prompt": sequences, "max_tokens": 1, "temperature": 1.0,
                "prompt_logprobs": 0}
        choices = sorted(self._post("/v1/completions", body).json()["choices"], key=lambda c: c["index"])
        return [c["prompt_logprobs"] for c in choices]

    def load(self, model: PreTrainedModel) -> None:
        if not hasattr(model, "peft_config"):
            raise ValueError("split placement syncs LoRA adapters: set model.lora.enabled=true")
        self.version += 1
        name = f"policy-{self.version}"
        path = self.sync_dir / name
        model.save_pretrained(path)  # peft writes the adapter only
        self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())})
        previous, self.model_name = self.model_name, name
        if previous.startswith("policy-"):
            self._post("/v1/unload_lora_adapter", {"lora_name": previous})

    def sleep(self) -> None:
        """The server has GPUs of its own: nothing to free."""


# --- the policy ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class VLLMPolicy:
    """The `Policy` on a vLLM engine; `sync_weights` after every update keeps it on the trainer's weights."""

    engine: Engine
    codec: ChatCodec
    temperature: float = 1.0
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        self.settings = sampling_settings(self.temperature, self.max_new_tokens, self.codec.tokenizer.eos_token_id)

    @property
    def logprob_temperature(self) -> float:
        return self.temperature if self.temperature > 0 else 1.0

    def with_temperature(self, temperature: float) -> VLLMPolicy:
        """The same engine (and weights) decoding at another temperature, e.g. greedy evaluation."""
        return dataclasses.replace(self, temperature=temperature)

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        if not requests:
            return []
        prompts = [self.codec.encode_prompt(r.messages, r.info.get("tools")) for r in requests]
        samples = self.engine.generate([ids for _, ids in prompts], self.settings)
        if len(samples) != len(prompts):
            raise RuntimeError(f"vLLM answered {len(samples)} of {len(prompts)} requests")
        return [PolicyOutput(text=self.codec.decode_response(tokens), prompt_text=text, prompt_ids=ids,
                             token_ids=tokens, logprobs=logprobs)
                for (text, ids), (tokens, logprobs) in zip(prompts, samples, strict=True)]

    def sync_weights(self, model: PreTrainedModel) -> None:
        self.engine.load(model)

    def release_memory(self) -> None:
        """Rollouts are over until the next sync: a colocated engine frees its GPU memory for the update."""
        self.engine.sleep()

    def score(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        """The engine's log-probs (temperature 1) of each response given its prompt."""
        entries = self.engine.score([p + r for p, r in zip(prompt_ids, response_ids, strict=True)])
        return [response_logprobs_from_prompt_logprobs(e, r) for e, r in zip(entries, response_ids, strict=True)]


def build_vllm_policy(settings: VLLMSettings, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      temperature: float, max_new_tokens: int, seed: int, distributed: bool,
                      model_path: str | None = None, dtype: str | None = None) -> VLLMPolicy:
    """The engine the settings describe, loaded with `model`'s weights (in `dtype`, default the model's)."""
    base = getattr(model, "get_base_model", lambda: model)()
    path = model_path or base.name_or_path
    if settings.placement == "split":
        if not settings.server_url or not settings.sync_dir:
            raise ValueError("policy.vllm.placement=split needs policy.vllm.server_url and policy.vllm.sync_dir")
        engine: Engine = ServerEngine(settings.server_url, settings.served_model or path, settings.sync_dir,
                                      settings.request_timeout_s)
    else:
        if not path:
            raise ValueError("vLLM needs the model's directory or hub name; pass model_path")
        engine = LocalEngine(path, dtype or str(base.dtype).removeprefix("torch."), settings, seed, distributed)
    policy = VLLMPolicy(engine, ChatCodec(tokenizer), temperature, max_new_tokens)
    policy.sync_weights(model)  # the trained model may differ from the files (SFT, a resumed checkpoint)
    return policy
