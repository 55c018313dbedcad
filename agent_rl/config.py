"""Typed configuration: dataclasses whose comments are the documentation, YAML on top (OmegaConf).

`load_config(path, overrides)` merges a YAML file and `a.b=c` overrides onto these defaults; a key
that is not a field here is an error naming the key, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def check_bounds(section: str, settings: Any, positive: Sequence[str] = (), non_negative: Sequence[str] = (),
                 fractions: Sequence[str] = ()) -> None:
    """Sizes, counts and rates: a ConfigError naming the key, its allowed range and the value (None = unset)."""
    for kind, names in (("> 0", positive), (">= 0", non_negative), ("in [0, 1)", fractions)):
        for name in names:
            value = getattr(settings, name)
            if value is None:
                continue
            ok = value > 0 if kind == "> 0" else value >= 0 if kind == ">= 0" else 0 <= value < 1
            if not ok:
                key = f"{section}.{name}" if section else name
                raise ConfigError(f"{key} must be {kind}, got {value}")


@dataclass
class TinyModelConfig:
    """Shape of the locally built model. The defaults train on 2 CPU cores in minutes."""

    vocab_size: int = 2048  # BPE merges are learned up to this size from the corpus
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_positions: int = 2048
    seed: int = 0  # initialisation seed: the same corpus and seed give the same model

    def __post_init__(self) -> None:
        check_bounds("model.tiny", self, positive=("vocab_size", "hidden_size", "num_layers", "num_heads",
                                                    "intermediate_size", "max_positions"))


@dataclass
class LoraSettings:
    """LoRA adapters through peft; off by default (the tiny model trains all its weights)."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        check_bounds("model.lora", self, positive=("r", "alpha"), fractions=("dropout",))


@dataclass
class EnvConfig:
    id: str = "textworld/demo-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to make(); e.g. {max_steps: 30}
    train_split: str = "train"
    eval_split: str = "test"
    max_turns: int = 8  # agent turns per episode (ALFWorld papers: 50; the demo quests need <= 4)
    history_window: int = 2  # K previous steps in each prompt (seed papers: 2)
    # What the model is asked to write (agent_rl/rollout/protocols.py): "tags" = <think>…</think><action>…</action>
    # (the seed papers'); "action-only" = the bare command, which small instruct models follow zero-shot.
    protocol: str = "tags"
    # List the env's admissible actions in each prompt. Tool envs list call templates
    # ("<search>QUERY</search>"), which a small instruct model copies verbatim: hide them there.
    show_admissible: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in RESPONSE_PROTOCOLS:
            raise ConfigError(f"env.protocol must be one of {list(RESPONSE_PROTOCOLS)}, got {self.protocol!r}")
        check_bounds("env", self, positive=("max_turns",), non_negative=("history_window",))


@dataclass
class ModelConfig:
    path: str | None = None  # a model directory, a .gguf file, or a hub name; None builds the tiny model
    gguf_file: str | None = None
    dtype: str = "float32"  # bf16 is slower than fp32 on CPUs without AMX
    device: str = "auto"  # "auto" = cuda when available, else cpu
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class RolloutConfig:
    tasks_per_iteration: int = 8  # seed papers: 16
    group_size: int = 8  # G rollouts per task from the same seed (seed papers: 8)
    temperature: float = 1.0
    max_new_tokens: int = 32
    # Where envs run (agent_rl/rollout/envpool.py): 0 = in this process; N = on N Ray worker processes
    # (`pip install agent-rl[ray]`), the episodes spread over them, several envs per worker.
    env_workers: int = 0
    env_timeout_s: float = 120.0  # Ray: a worker that answers no batch of resets/steps in this time is killed
    env_max_retries: int = 2  # Ray: restarts of an episode whose worker died or hung; then it is kept as env_error
    # Ray: modules every worker imports before it builds an env (where a user's register() calls live);
    # built-in and plugin envs need none: workers discover the agent_rl.envs entry points themselves.
    worker_modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_bounds("rollout", self, positive=("tasks_per_iteration", "group_size", "max_new_tokens", "env_timeout_s"),
                     non_negative=("temperature", "env_workers", "env_max_retries"))


@dataclass
class VLLMSettings:
    """vLLM rollouts (`policy.backend: vllm`; GPU only, `pip install agent-rl[gpu]`)."""

    # colocated: an in-process engine on each training GPU, sharing it with the trainer (verl's layout);
    # split: a `vllm serve` server on other GPUs, fed LoRA adapters through /v1/load_lora_adapter
    placement: str = "colocated"
    gpu_memory_utilization: float = 0.35  # colocated: share of the GPU vLLM reserves (weights + KV cache)
    tensor_parallel_size: int = 1  # colocated: GPUs per engine (each rank runs its own engine)
    max_model_len: int | None = None  # prompt + response tokens; None = the model's limit (a larger KV cache)
    sleep_during_update: bool = True  # colocated: vLLM frees its GPU memory (sleep level 1) while the trainer updates
    enforce_eager: bool = False  # skip CUDA graph capture (faster start, slower decoding)
    check_sync: bool = True  # after every weight sync, compare vLLM's and the trainer's log-probs on the same tokens
    server_url: str | None = None  # split: the server's base URL, e.g. http://gpu-node:8000
    served_model: str | None = None  # split: the base model's name on the server (default: model.path)
    sync_dir: str | None = None  # split: a directory the server can read; each update's adapter is saved there
    request_timeout_s: float = 600.0  # split: a weight load or generate call slower than this is an error, not a hang

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"policy.vllm.placement must be one of {list(PLACEMENTS)}, got {self.placement!r}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(f"policy.vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        check_bounds("policy.vllm", self, positive=("tensor_parallel_size", "max_model_len", "request_timeout_s"))


@dataclass
class PolicyConfig:
    """Which engine generates the rollouts; the trainer always updates the transformers model."""

    backend: str = "hf"  # hf: transformers generate on the trained model; vllm: a vLLM engine synced after updates
    vllm: VLLMSettings = field(default_factory=VLLMSettings)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"policy.backend must be one of {list(BACKENDS)}, got {self.backend!r}")


@dataclass
class TrainSettings:
    """How the update runs on the hardware; `accelerate launch` chooses DDP / FSDP / DeepSpeed (configs/accelerate/)."""

    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    mixed_precision: str = "no"  # bf16: autocast through accelerate (GPU); "no" keeps the model's dtype
    # torch intra-op threads, set once at start-up (agent_rl/train/threads.py). 0 = OMP_NUM_THREADS when set,
    # else one per core this process may use (its affinity). On a machine shared with other jobs set it to
    # the cores that are free: more threads than free cores made a tiny-model step 4x slower on 2 busy cores.
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"train.mixed_precision must be one of {list(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        check_bounds("train", self, non_negative=("num_threads",))


@dataclass
class AlgoConfig:
    name: str = "gigpo"
    params: dict[str, Any] = field(default_factory=dict)  # overrides of the method's config (see `agent-rl algos`)


@dataclass
class OptimConfig:
    lr: float = 1e-6  # seed papers' value for 1.5B-7B models
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_bounds("optim", self, positive=("lr",), non_negative=("weight_decay", "grad_clip"))
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")


@dataclass
class PPOConfig:
    epochs: int = 1
    mini_batch_rows: int = 64  # rows per optimizer step
    micro_batch_rows: int = 16  # rows per forward/backward (gradient accumulation inside a mini-batch)
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = 3.0  # None disables dual-clip
    kl_coef: float = 0.0  # > 0 adds low-variance KL to a frozen copy of the starting policy (papers: 0.01)

    def __post_init__(self) -> None:
        check_bounds("ppo", self, positive=("epochs", "mini_batch_rows", "micro_batch_rows"),
                     non_negative=("clip_low", "clip_high", "kl_coef"))
        if self.dual_clip is not None and self.dual_clip <= 1:
            raise ConfigError(f"ppo.dual_clip must be > 1 (or null to disable it), got {self.dual_clip}")


@dataclass
class SFTConfig:
    enabled: bool = True  # warm-start on expert demonstrations before RL
    episodes_per_task: int = 1  # expert episodes per training task
    tasks: int | None = None  # imitate only the first N training tasks (None = all); RL samples from all
    epochs: int = 30
    lr: float = 3e-3
    batch_rows: int = 32
    # agent_rl: our loop (agent_rl/train/sft.py); trl: TRL's SFTTrainer on the same token rows and mask
    # (agent-rl[trl]). Same held-out success within noise, 1.15-2.9x slower (experiments/README.md, "TRL").
    backend: str = "agent_rl"

    def __post_init__(self) -> None:
        if self.backend not in SFT_BACKENDS:
            raise ConfigError(f"sft.backend must be one of {list(SFT_BACKENDS)}, got {self.backend!r}")
        check_bounds("sft", self, positive=("episodes_per_task", "tasks", "lr", "batch_rows"),
                     non_negative=("epochs",))


@dataclass
class EvalConfig:
    seeds: list[int] = field(default_factory=lambda: [0])
    episodes: int | None = None  # per seed; None = every task of the split once
    temperature: float = 0.0  # 0 = greedy, which makes results independent of the batch size
    every: int = 0  # evaluate on the eval split every N iterations (0 = only before and after)
    before: bool = True  # evaluate the starting model (off when several runs share one start, measured once)

    def __post_init__(self) -> None:
        check_bounds("eval", self, positive=("episodes",), non_negative=("temperature", "every"))
        if not self.seeds:
            raise ConfigError("eval.seeds must list at least one seed, e.g. eval.seeds=[0]")


@dataclass
class LogConfig:
    """Where metrics go besides `metrics.jsonl` and TensorBoard, which every run writes."""

    wandb: bool = False  # also log to Weights & Biases (pip install wandb; WANDB_MODE=offline needs no account)
    wandb_project: str = "agent-rl"
    wandb_name: str | None = None  # the W&B run's name; None = the run directory's name


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    log: LogConfig = field(default_factory=LogConfig)
    iterations: int = 20
    seed: int = 0
    out_dir: str = "runs/demo"
    checkpoint_every: int = 1  # iterations between checkpoints
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        check_bounds("", self, positive=("checkpoint_every", "keep_checkpoints"), non_negative=("iterations",))


class ConfigError(ValueError):
    pass


BACKENDS = ("hf", "vllm")
SFT_BACKENDS = ("agent_rl", "trl")
RESPONSE_PROTOCOLS = ("tags", "action-only")  # agent_rl.rollout.protocols.PROTOCOLS
PLACEMENTS = ("colocated", "split")
MIXED_PRECISION = ("no", "bf16")


# A method's preset (`configs/algos/<name>.yaml`) holds its papers' settings; only these sections,
# since learning rates and batch sizes belong to the model and the machine, not to the method.
PRESET_SECTIONS = frozenset({"algo", "ppo"})


def algo_preset_path(name: str) -> Path | None:
    """The packaged preset of credit method `name`, or None when it has none."""
    path = Path(str(resources.files("agent_rl.configs") / "algos" / f"{name}.yaml"))
    return path if path.is_file() else None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults <- the method's preset <- YAML file <- `a.b=c` overrides, validated against `TrainConfig`.

    The method is the `algo.name` that the file and overrides select; its preset (the papers'
    settings for it, see `algo_preset_path`) sits under them, so anything the user sets wins.
    """
    for item in overrides or []:
        key = item.partition("=")[0].strip()
        if "=" not in item or not _OVERRIDE_KEY.fullmatch(key):
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. rollout.group_size=4)")
    # (source, layer) pairs merged one by one, so an error names the file or override that caused it
    layers: list[tuple[str, Any]] = [("defaults", OmegaConf.structured(TrainConfig))]
    try:
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            layers.append((f"config file {str(path)!r}", _load_yaml(path)))
        layers += [(f"override {item!r}", OmegaConf.from_dotlist([item])) for item in overrides or []]
        merged = _merge_layers(layers)
        preset = algo_preset_path(str(merged.algo.name))
        if preset is not None:  # under the file and overrides: merge again with it right above the defaults
            layers.insert(1, (f"method preset {str(preset)!r}", _load_preset(preset)))
            merged = _merge_layers(layers)
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad configuration: {_first_line(err)}{_key_of(err)}") from err
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


_OVERRIDE_KEY = re.compile(r"[A-Za-z_]\w*(\.\w+)*")  # a.b.c, no empty parts


def _key_of(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)  # OmegaConf names the key of a type error only in its last lines
    return f" (key {key})" if key else ""


def _merge_layers(layers: list[tuple[str, Any]]) -> Any:
    """Merge (source, layer) pairs in order; an error names the source of the layer that caused it."""
    merged = layers[0][1]
    for source, layer in layers[1:]:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{source}: {_first_line(err)}{_key_of(err)}") from err
    return merged


def _load_preset(path: Path) -> DictConfig:
    preset = _load_yaml(path)
    extra = sorted(set(preset) - PRESET_SECTIONS)
    if extra:
        raise ConfigError(f"method preset {str(path)!r} may only set {sorted(PRESET_SECTIONS)}, not {extra}")
    return preset


def _load_yaml(path: str | Path) -> DictConfig:
    """The YAML file as a mapping; anything else is a one-line ConfigError naming the file."""
    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {_yaml_problem(err)}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason})") from err
    except OSError as err:
        if err.errno is not None:  # a real I/O error: permissions, a directory, ...
            raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror}") from err
        # OmegaConf's answer to a scalar top level: "Invalid loaded object type: int"
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings ({_first_line(err)})") from err
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings, not a list")
    return loaded


def _yaml_problem(err: yaml.YAMLError) -> str:
    """`problem (line L, column C)` from a yaml error, on one line (str(err) spans several)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not problem:
        return _first_line(err)
    text = " ".join(str(problem).split())
    if mark is not None:
        text += f" (line {mark.line + 1}, column {mark.column + 1})"
    return text


def to_yaml(config: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]

