"""`agent-rl eval`: turn the command line into a policy, an env factory and a protocol, then evaluate."""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from agent_rl.config import TrainConfig, load_config
from agent_rl.env_api import describe_tasks
from agent_rl.eval.harness import evaluate, success_definition
from agent_rl.eval.tables import EvalProtocol
from agent_rl.policy.base import Policy
from agent_rl.policy.hf import check_model_path
from agent_rl.registry import make, spec
from agent_rl.rollout.envpool import EnvWorkers, import_modules
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.rollout.protocols import protocol_of
from agent_rl.train.checkpoint import list_checkpoints


def policy_model_dir(policy: str) -> Path:
    """The model a `--policy` path names: a model folder, a checkpoint or a run (its newest checkpoint)."""
    path = Path(policy).expanduser()
    return resolve_model_dir(path) if path.exists() else path


def resolve_model_dir(path: Path) -> Path:
    """A model directory, a checkpoint (`iter-*/model`), or a training run (its newest checkpoint)."""
    if (path / "model" / "config.json").exists():
        return path / "model"
    checkpoints = list_checkpoints(path / "checkpoints")
    if checkpoints:
        return checkpoints[-1] / "model"
    return path


NON_DECODING_POLICIES = ("expert", "random")  # they pick actions directly: --temperature does not apply


def build_policy(name: str, args: argparse.Namespace) -> tuple[Policy, dict[str, Any], str]:
    """The policy, the env kwargs it needs, and its label for the table."""
    from agent_rl.policy.baselines import ExpertPolicy, RandomPolicy

    protocol = protocol_of(args.protocol)
    if name == "expert":
        return ExpertPolicy(protocol=protocol), {"expert": True}, "expert (the env's scripted expert)"
    if name == "random":
        return RandomPolicy(seed=args.seeds[0], protocol=protocol), {}, "random (uniform over admissible actions)"
    if name.startswith(("http:", "https:")):
        from agent_rl.policy.http import OpenAIChatPolicy

        url, sep, model = name.removeprefix("http:").partition("#") if name.startswith("http:") else (name, "", "")
        if not sep or not model:
            raise ValueError(f"--policy {name!r}: write http:BASE_URL#MODEL, e.g. http:http://localhost:8000/v1#qwen")
        return (OpenAIChatPolicy(url, model, temperature=args.temperature, max_tokens=args.max_new_tokens), {},
                f"{model} via {url}")
    from agent_rl.policy.hf import HFPolicy, load_model_and_tokenizer
    from agent_rl.train.pipeline import resolve_device

    model_dir = policy_model_dir(name)
    model, tokenizer = load_model_and_tokenizer(str(model_dir), device=resolve_device("auto"))
    return HFPolicy(model, tokenizer, args.temperature, args.max_new_tokens), {}, str(model_dir)


def parse_env_args(items: list[str]) -> dict[str, Any]:
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ValueError(f"--env-arg {item!r} must look like name=value")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


DEFAULT_MAX_TURNS = 30
DEFAULT_HISTORY = 2
DEFAULT_SPLIT = "test"
DEFAULT_PROTOCOL = "tags"


def run_config(policy: str) -> tuple[Path, TrainConfig] | None:
    """The saved config of the training run that `policy` names: the run directory itself, one of its
    model folders (`sft_model/`, `base_model/`) or one of its checkpoints (`checkpoints/iter-*`)."""
    path = Path(policy).expanduser()
    candidates = [path, path.parent] + ([path.parent.parent] if path.parent.name == "checkpoints" else [])
    for folder in candidates:
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml", load_config(folder / "config.yaml")
    return None


def resolve_protocol(args: argparse.Namespace, log: Callable[[str], None] = print) -> None:
    """Fill the protocol flags left unset (`--env`, `--split`, `--max-turns`, `--history`, `--protocol`, env args)
    from the run's config.yaml when `--policy` is a training run, else the defaults; say which values it used.

    Flags given on the command line win; the run's env args are used only for the run's own env.
    """
    found = run_config(args.policy)
    if found is None:
        if args.env is None:
            raise ValueError("--env is required unless --policy is a training run (a folder with config.yaml)")
        args.split = args.split or DEFAULT_SPLIT
        args.max_turns = DEFAULT_MAX_TURNS if args.max_turns is None else args.max_turns
        args.history = DEFAULT_HISTORY if args.history is None else args.history
        args.protocol = args.protocol or DEFAULT_PROTOCOL
        return
    path, config = found
    run_env = config.env
    flags = ("env", "split", "max_turns", "history", "protocol")
    given = {name for name in flags if getattr(args, name) is not None}
    args.env = args.env or run_env.id
    same_env = args.env == run_env.id
    args.split = args.split or (run_env.eval_split if same_env else DEFAULT_SPLIT)
    args.max_turns = run_env.max_turns if args.max_turns is None else args.max_turns
    args.history = run_env.history_window if args.history is None else args.history
    args.protocol = args.protocol or run_env.protocol
    run_env_args = [f"{key}={json.dumps(value)}" for key, value in run_env.kwargs.items()] if same_env else []
    args.env_arg = run_env_args + list(args.env_arg)  # later wins in parse_env_args
    source = {name: "given" if name in given else "from the run" for name in flags}
    log(f"eval protocol ({path}): env {args.env} ({source['env']}), split {args.split} ({source['split']}), "
        f"max turns {args.max_turns} ({source['max_turns']}), history {args.history} ({source['history']}), "
        f"response protocol {args.protocol} ({source['protocol']}), "
        f"env args {parse_env_args(args.env_arg)}" + (" (the run's, then --env-arg)" if same_env else " (--env-arg)"))


def run_eval(args: argparse.Namespace) -> Path:
    resolve_protocol(args)
    workers = EnvWorkers(args.env_workers, modules=tuple(args.worker_module))
    import_modules(workers.modules)  # a user's register() calls, before the id is looked up
    env_spec = spec(args.env)  # unknown ids fail before any model is loaded
    if not env_spec.takes("split") and args.split != DEFAULT_SPLIT:
        raise ValueError(f"--split {args.split}: {args.env} has no splits (it takes {env_spec.parameters()})")
    split = {"split": args.split} if env_spec.takes("split") else {}  # single-set envs (your own games) have none
    env_kwargs = {**parse_env_args(args.env_arg), **split}
    if args.policy not in NON_DECODING_POLICIES and not args.policy.startswith(("http:", "https:")):
        check_model_path(str(policy_model_dir(args.policy)))
    tasks = describe_tasks(functools.partial(make, args.env, **env_kwargs))  # bad env args fail here, before the model
    policy, policy_env_kwargs, label = build_policy(args.policy, args)
    env_kwargs = {**env_kwargs, **policy_env_kwargs}
    make_env = functools.partial(make, args.env, **env_kwargs)
    protocol = EvalProtocol(
        env_id=args.env, split=args.split, policy=label, seeds=tuple(args.seeds),
        episodes_per_seed=args.episodes or tasks.size, catalog_size=tasks.size, max_steps=args.max_turns,
        success_definition=success_definition(None if args.policy in NON_DECODING_POLICIES else args.temperature,
                                              tasks.won_means),
        task_set=tasks.name, response_protocol=args.protocol,
    )
    out = Path(args.out or Path("runs") / "eval" / args.env.replace("/", "_") / re.sub(r"\W+", "_", args.policy))
    with tqdm(total=len(protocol.seeds) * protocol.episodes_per_seed, desc="eval", unit="ep") as bar:
        memory = HistoryMemory(window=args.history, protocol=protocol_of(args.protocol))
        evaluate(make_env, policy, protocol, memory, out, args.batch_size,
                 config={"argv": vars(args), "env_kwargs": env_kwargs}, progress=bar.update, workers=workers)
    print((out / "table.md").read_text())
    print(f"episodes, metadata and tables written to {out}")
    return out
