"""The SFT warm-start on our loop vs on TRL's SFTTrainer: same model, rows, epochs and lr; held-out success and time.

    OMP_NUM_THREADS=1 nice -n 10 python experiments/compare_sft_backends.py --out runs/sft_backends --seeds 0 1
    python experiments/compare_sft_backends.py --out runs/sft_backends --seeds 0 1 --report-only

Protocol (stated again in the table it writes):
1. one base model for both: the tiny model the CPU demo builds (`--config`, default configs/demo.yaml);
2. one set of demonstrations: the env's planner on the first `sft.tasks` training tasks, its token ids
   recorded once per run with the model's chat codec (deterministic: both backends get identical rows);
3. per seed and backend (`sft.backend`), SFT from the base with the config's epochs, lr, rows per step and
   micro-batches; the seed sets the row order and nothing else (each backend shuffles with its own sampler,
   so the orders differ; TRL also exempts biases and norm weights from weight decay); the order of the
   backends alternates per seed so that a drift in the machine's load does not favour one;
4. held-out success after SFT: greedy, every test task once, the env's `won` within the turn limit;
5. SFT wall-clock: the training call only (not collecting demonstrations, saving or evaluating),
   torch threads `--threads`, on a machine shared with other jobs: compare the ratio, not the seconds.
Every run lives in `<out>/<backend>/seed-<s>` (result.json, sft_model/, eval/) and is skipped when done.
Writes `<out>/table.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from agent_rl.config import load_config
from agent_rl.io import atomic_directory, atomic_write, read_jsonl
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.train.pipeline import TrainingRun, seed_everything
from agent_rl.train.sft import sft_trainer

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
BACKENDS = ("agent_rl", "trl")


def run_one(args: argparse.Namespace, backend: str, seed: int, base: Path) -> dict:
    """SFT the base with `backend` and evaluate it (reused when its result.json exists)."""
    out = args.out / backend / f"seed-{seed}"
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    config = load_config(args.config, [*args.set, f"seed={seed}", f"sft.backend={backend}",
                                       f"model.path={base}", f"out_dir={out}"])
    run = TrainingRun(config, log=lambda _: None)
    seed_everything(seed)
    model, tokenizer = run.load(base)
    demos = run.demonstrations(expert=ExpertPolicy(ChatCodec(tokenizer)))
    cfg = config.sft
    clock = time.perf_counter()

    def progress(epoch: int, loss: float) -> None:  # one line an epoch: enough to extrapolate the run's time
        print(f"{backend} seed {seed} epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, "
              f"{time.perf_counter() - clock:.0f} s", flush=True)

    losses = sft_trainer(backend, seed)(model, tokenizer, demos, cfg.epochs, cfg.lr, cfg.batch_rows,
                                        config.ppo.micro_batch_rows, config.optim.grad_clip,
                                        config.optim.weight_decay, progress)
    seconds = time.perf_counter() - clock
    with atomic_directory(out / "sft_model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    rows = run.evaluate(model, tokenizer, "after_sft", f"after SFT ({backend}, seed {seed})")
    overall = next(row for row in rows if row.task_type == "overall")
    result = {"backend": backend, "seed": seed, "sft_seconds": seconds, "losses": losses,
              "demo_steps": sum(len(t.steps) for t in demos), "episodes": overall.n,
              "successes": round(overall.success_mean * overall.n), "success": overall.success_mean}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(result_path) as handle:
        handle.write(json.dumps(result, indent=1))
    print(f"{backend} seed {seed}: SFT {seconds:.0f} s, final loss {losses[-1]:.4f}, "
          f"held-out success {100 * overall.success_mean:.1f} %", flush=True)
    return result


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a success proportion (pooled episodes of every seed)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def sign_test(only_a: int, only_b: int) -> float:
    """Two-sided exact sign test (McNemar) on the discordant pairs: p of a split at least this uneven."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def discordant(args: argparse.Namespace, seed: int) -> tuple[int, int]:
    """Held-out tasks (same seed) won by our loop's model only, and by TRL's only."""
    won = {}
    for backend in BACKENDS:
        episodes = read_jsonl(args.out / backend / f"seed-{seed}" / "eval" / "after_sft" / "episodes.jsonl")
        won[backend] = {e["task_id"]: bool(e["success"]) for e in episodes}
    ours, theirs = won["agent_rl"], won["trl"]
    return sum(ours[t] and not theirs[t] for t in ours), sum(theirs[t] and not ours[t] for t in ours)


def write_report(args: argparse.Namespace, results: list[dict]) -> str:
    config = load_config(args.config, args.set)
    done = {b: [r for r in results if r["backend"] == b] for b in BACKENDS}
    steps = sorted({r["demo_steps"] for r in results})
    lines = [
        "Protocol:",
        (f"- env `{config.env.id}`: SFT on the planner's episodes of the first {config.sft.tasks} `train` tasks "
        f"({', '.join(map(str, steps))} step rows); held-out split `{config.env.eval_split}`, every task once, greedy, "
        f"{config.env.max_turns} turns, history window {config.env.history_window}"),
        (f"- model: the tiny model (Llama, {config.model.tiny.num_layers} layers x {config.model.tiny.hidden_size}, "
        "random init, BPE trained here), one base for both backends"),
        (f"- SFT: {config.sft.epochs} epochs, AdamW lr {config.sft.lr} constant, {config.sft.batch_rows} rows per "
        f"optimizer step, micro-batches of up to {config.ppo.micro_batch_rows} rows, grad clip "
        f"{config.optim.grad_clip}, weight decay {config.optim.weight_decay}; token-mean NLL of the response tokens"),
        (f"- seeds: {' '.join(str(r['seed']) for r in done['agent_rl'])} (row order, each backend's own "
        "shuffle: ours torch.randperm, TRL's sampler); TRL exempts biases and norm weights from weight decay; "
        "success = the env reports won; 95 % CI: Wilson, over the pooled held-out episodes of all seeds"),
        f"- time: the SFT call alone, torch threads {args.threads}, nice 10, on a 2-core machine shared with other jobs",
        "",
        "| SFT backend | held-out success per seed | pooled (95 % CI) | final loss per seed | SFT wall-clock per seed |",
        "|---|---|---|---|---|",
    ]
    for backend, runs in done.items():
        if not runs:
            continue
        n, k = sum(r["episodes"] for r in runs), sum(r["successes"] for r in runs)
        low, high = wilson(k, n)
        per_seed = " / ".join(f"{100 * r['success']:.1f}" for r in runs)
        losses = " / ".join(f"{r['losses'][-1]:.4f}" for r in runs)
        seconds = " / ".join(f"{r['sft_seconds']:.0f} s" for r in runs)
        lines.append(f"| {backend} | {per_seed} | {100 * k / n:.1f} ({100 * low:.1f}-{100 * high:.1f}), N={n} | "
                     f"{losses} | {seconds} |")
    pairs = [(a, t) for a in done["agent_rl"] for t in done["trl"] if a["seed"] == t["seed"]]
    if pairs:
        ratios = [t["sft_seconds"] / a["sft_seconds"] for a, t in pairs]
        only = [discordant(args, a["seed"]) for a, _ in pairs]
        ours, theirs = sum(o for o, _ in only), sum(t for _, t in only)
        lines += ["", (f"TRL / ours SFT wall-clock, same seed: {' / '.join(f'{x:.2f}' for x in ratios)} "
                      f"(mean {statistics.fmean(ratios):.2f})"),
                  "", (f"Paired on the same held-out tasks and seed: won by ours only {ours}, by TRL's only {theirs} "
                       f"(per seed {' / '.join(f'{o}-{t}' for o, t in only)}); two-sided exact sign test "
                       f"p = {sign_test(ours, theirs):.2f}")]
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "table.md") as handle:
        handle.write(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--out", type=Path, default=Path("runs/sft_backends"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], help="config overrides a.b=c for every run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for i, seed in enumerate(args.seeds):
        order = BACKENDS if i % 2 == 0 else BACKENDS[::-1]
        for backend in order:
            result_path = args.out / backend / f"seed-{seed}" / "result.json"
            if args.report_only:
                if result_path.exists():
                    results.append(json.loads(result_path.read_text()))
                continue
            base_run = TrainingRun(load_config(args.config, [*args.set, f"out_dir={args.out / 'base'}"]))
            results.append(run_one(args, backend, seed, Path(base_run.base_model_path())))
    print(write_report(args, results))


if __name__ == "__main__":
    main()
