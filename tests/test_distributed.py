"""The update through accelerate on two CPU processes (gloo) equals the single-process update on the same batch."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from agent_rl.config import PPOConfig, TrainSettings
from agent_rl.data import Step
from agent_rl.train.distributed import Distributed
from agent_rl.train.rows import TokenRows, build_token_rows
from agent_rl.train.update import make_ppo_loss, optimizer_step

pytest.importorskip("accelerate")

MICRO_BATCH_ROWS = 2
GRAD_CLIP = 1e9  # no clipping: it would hide a wrong gradient scale (the pre-clip norm is compared as a stat)


def batch(vocab: int, pad_id: int) -> TokenRows:
    """Five rows of different prompt / response lengths: two ranks get 3 and 2 rows, so different token
    counts and, with micro-batches of 2, two passes on rank 0 and one (plus a padding pass) on rank 1."""
    rng = np.random.default_rng(0)
    shapes = [(7, 3), (2, 5), (12, 1), (4, 4), (9, 2)]
    steps = [Step(obs="", anchor="", prompt="", response="", action=None, reward=0.0, valid=True,
                  prompt_ids=rng.integers(10, vocab, p).tolist(), response_ids=rng.integers(10, vocab, r).tolist(),
                  logprobs=(np.log(1 / vocab) + rng.normal(0, 0.3, r)).tolist()) for p, r in shapes]
    return build_token_rows(steps, np.array([1.0, -0.5, 2.0, -1.5, 0.3]), pad_id)


def one_step(model_dir: Path, dist: Distributed | None) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One PPO optimizer step (SGD, lr 1: the weight change is the clipped gradient) from the saved tiny model."""
    from agent_rl.policy.hf import load_model_and_tokenizer

    torch.set_num_threads(1)
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    rows = batch(len(tokenizer), tokenizer.pad_token_id)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    train_model = model
    if dist is not None:
        train_model, optimizer = dist.prepare(model, optimizer)
    stats = optimizer_step(train_model, optimizer, rows, MICRO_BATCH_ROWS, make_ppo_loss(PPOConfig()), GRAD_CLIP,
                           dist=dist)
    return stats, {name: p.detach().clone() for name, p in model.named_parameters()}


def rank_main(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    import os

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist = Distributed.from_settings(TrainSettings())
    assert dist.accelerator is not None and (dist.rank, dist.world) == (rank, world)
    stats, weights = one_step(Path(model_dir), dist)
    # the collectives the trainer's rollout phase uses
    gathered = dist.gather(dist.shard(list(range(5))))
    order = dist.broadcast(torch.randperm(5) if rank == 0 else torch.zeros(5, dtype=torch.long))
    if rank == 0:
        torch.save(weights, Path(out) / "weights.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({"stats": stats, "gathered": gathered,
                                                            "order": order.tolist()}))
    dist.barrier()
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ranks")
    torch.multiprocessing.start_processes(rank_main, args=(2, free_port(), str(tiny_model_dir), str(out)), nprocs=2,
                                          start_method="spawn")
    return out


def test_two_ranks_make_the_single_process_update(tiny_model_dir: Path, two_ranks: Path):
    single_stats, single = one_step(tiny_model_dir, None)
    distributed = torch.load(two_ranks / "weights.pt")
    gap = max(float((single[name] - distributed[name]).abs().max()) for name in single)
    assert gap < 1e-6, gap
    for rank in (0, 1):
        stats = json.loads((two_ranks / f"rank{rank}.json").read_text())["stats"]
        assert stats.keys() == single_stats.keys()
        for key, value in stats.items():  # token-weighted stats summed over ranks = the single-process ones
            assert value == pytest.approx(single_stats[key], rel=1e-5, abs=1e-7), key


def test_the_update_moved_the_weights(tiny_model_dir: Path):
    from agent_rl.policy.hf import load_model_and_tokenizer

    start = dict(load_model_and_tokenizer(str(tiny_model_dir))[0].named_parameters())
    stats, after = one_step(tiny_model_dir, None)
    assert stats["grad_norm"] > 0
    assert max(float((after[n] - start[n].detach()).abs().max()) for n in after) > 1e-3  # vs the 1e-6 tolerance


def test_rollout_collectives_gather_in_rank_order_and_share_rank_0s_shuffle(two_ranks: Path):
    results = [json.loads((two_ranks / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(r["gathered"] == [0, 2, 4, 1, 3] for r in results)  # rank 0 took 0, 2, 4; rank 1 took 1, 3
    assert results[0]["order"] == results[1]["order"] and sorted(results[0]["order"]) == list(range(5))


@pytest.mark.parametrize("rank, world, rows, micro, expected", [
    (0, 1, 5, 2, [[0, 1], [2, 3], [4]]),  # one process: the order and split of the single-process loop
    (0, 2, 5, 2, [[0, 2], [4]]),
    (1, 2, 5, 2, [[1, 3], None]),  # a padding pass: every rank runs as many forwards as the busiest
    (1, 4, 2, 2, [[1]]),
    (3, 4, 2, 2, [None]),  # no row at all still joins the collectives once
])
def test_micro_batches_per_rank(rank: int, world: int, rows: int, micro: int, expected: list):
    class Ranks(Distributed):
        rank = property(lambda self: rank)  # type: ignore[assignment]
        world = property(lambda self: world)  # type: ignore[assignment]

    assert Ranks().micro_batches(rows, micro) == expected


def test_a_plain_process_uses_no_accelerate(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = Distributed.from_settings(TrainSettings())
    assert dist.accelerator is None and (dist.rank, dist.world, dist.is_main) == (0, 1, True)
    assert not dist.shards_parameters and dist.shard([1, 2, 3]) == [1, 2, 3]
