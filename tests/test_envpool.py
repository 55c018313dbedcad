"""The collector's handling of lost envs, without Ray: a pool that loses chosen slots on cue."""

from __future__ import annotations

from collections import Counter

from ray_envs import TARGETS, StepsEnv

from agent_rl.credit.arpo import sampled_step_codes
from agent_rl.data import Trajectory
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.envpool import EnvWorkers, InProcessEnvPool, PoolReply
from agent_rl.rollout.memory import HistoryMemory


class LosingPool(InProcessEnvPool):
    """Loses slot s (its env is destroyed, no answer) in the `lose_at[s]`-th step call that includes it."""

    def __init__(self, lose_at: dict[int, int]) -> None:
        super().__init__(lambda: StepsEnv(expert=True))
        self.lose_at = dict(lose_at)
        self.calls: Counter[int] = Counter()

    def step(self, actions: dict[int, str]) -> PoolReply:
        self.calls.update(actions.keys())
        doomed = {s for s in actions if self.calls[s] == self.lose_at.get(s)}
        reply = super().step({s: a for s, a in actions.items() if s not in doomed})
        for slot in doomed:
            del self.slots.envs[slot]  # the next reset builds a fresh env, as a fresh worker would
            reply.lost[slot] = f"slot {slot} lost"
        return reply


def collector_with(pool: LosingPool, max_retries: int = 2) -> Collector:
    collector = Collector(lambda: StepsEnv(expert=True), ExpertPolicy(), HistoryMemory(), max_turns=6,
                          workers=EnvWorkers(max_retries=max_retries))
    collector.pool = pool
    return collector


def test_a_lost_episode_restarts_from_scratch_and_is_marked():
    specs = [EpisodeSpec(task, 0, f"g{task}", f"g{task}/r0") for task in (2, 2, 1)]
    trajectories = collector_with(LosingPool({1: 2})).run(specs)  # slot 1 lost at its 2nd step
    assert [t.traj_id for t in trajectories] == [s.traj_id for s in specs]
    assert all(t.success and [s.anchor for s in t.steps] == ["2:0", "2:1", "2:2"] for t in trajectories[:2])
    assert trajectories[1].metadata["env_retries"] == 1
    assert trajectories[1].metadata["env_retry_reasons"] == ["slot 1 lost"]
    assert "env_retries" not in trajectories[0].metadata and "env_retries" not in trajectories[2].metadata


def test_out_of_retries_the_episode_is_kept_as_env_error():
    pool = LosingPool({0: 1})
    collector = collector_with(pool, max_retries=0)
    (t,) = collector.run([EpisodeSpec(3, 0, "g", "g/r0")])
    assert t.metadata["env_error"] == "env lost 1 times, 0 retries allowed (rollout.env_max_retries); last: slot 0 lost"
    assert t.steps == [] and not t.success and t.traj_id == "g/r0"


def test_forks_of_a_restarted_episode_keep_their_own_step_identity():
    # r0 forks after its first turn (the fork replays 1 step in slot 1); then r0's env is lost at its
    # 2nd step and r0 restarts: the fork's copied step must not share an identity with r0's new step 0
    def after_turn(acted: list[Trajectory], started: list[Trajectory]) -> list[EpisodeSpec]:
        if len(started) == 1:
            return [EpisodeSpec(2, 5, "g", "g/r1", fork_of="g/r0", fork_steps=1)]
        return []

    source, fork = collector_with(LosingPool({0: 2})).run([EpisodeSpec(2, 5, "g", "g/r0")], after_turn)
    assert source.metadata["env_retries"] == 1 and source.success and len(source.steps) == TARGETS[2]
    assert fork.metadata["branch_of"] == "g/r0" and fork.success
    assert fork.steps[0].info["sampled_by"] == "g/r0 (attempt 1, lost)"
    codes = sampled_step_codes([source, fork])
    assert len(set(codes)) == len(codes)  # nothing counted twice: the fork's steps are no copies of r0's now
