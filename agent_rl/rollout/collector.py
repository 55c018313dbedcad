"""The collector: many episodes at once against a batched policy, grouped G per task and seed."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_rl.data import Group, Step, Trajectory
from agent_rl.env_api import ActionSyntax, TextEnv
from agent_rl.policy.base import Policy, PolicyRequest
from agent_rl.rollout.envpool import EnvRaised, EnvWorkers, PoolReply, Reset, make_env_pool
from agent_rl.rollout.memory import HistoryMemory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeSpec:
    """Which task to play from which seed, and the ids the trajectory is filed under.

    A fork (`fork_of` = the traj_id of an episode of the same run, same task and seed) does not start
    from the task's first turn: it continues a copy of that episode's first `fork_steps` steps (rollout
    branching, e.g. ARPO's; see `Collector.run`).
    """

    task_index: int
    seed: int
    group_id: str
    traj_id: str
    fork_of: str = ""
    fork_steps: int = 0


@dataclass
class _LiveEpisode:
    slot: int  # the pool slot (env) this episode runs in; equal to its index in `Collector.run`'s episodes
    spec: EpisodeSpec
    trajectory: Trajectory
    obs: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    action_syntax: ActionSyntax = field(default_factory=ActionSyntax)
    history: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RolloutTiming:
    """Where the wall-clock time of the last `run` went (for the benchmarks)."""

    policy_s: float = 0.0
    env_s: float = 0.0
    env_steps: int = 0
    policy_calls: int = 0


# after_turn(acted, started) -> episodes to add: `acted` are the trajectories that took a step this
# turn (in batch order), `started` every trajectory of the run so far, finished ones included.
TurnHook = Callable[[list[Trajectory], list[Trajectory]], list[EpisodeSpec]]


def action_is_valid(action: str, admissible: list[str], info: dict[str, Any]) -> bool:
    """The env's own verdict when it gives one (`action_valid`), else accepted and admissible (env_api)."""
    if "action_valid" in info:
        return bool(info["action_valid"])
    return not info.get("action_rejected", False) and (not admissible or action in admissible)


class Collector:
    """Runs episodes in lock-step: each turn, one `policy.act` call answers every live episode, and one
    env-pool call steps all their actions (`agent_rl.rollout.envpool`: in process, or on Ray workers).

    An unparsable response is an invalid step (the env is not stepped; the agent sees why in its
    history). An env that raises is replaced by a fresh one and its trajectory is marked in
    `metadata["env_error"]`, never dropped silently. An episode whose env was lost with its worker
    process (died or hung past `workers.timeout_s`) restarts from scratch, at most `workers.max_retries`
    times, recorded in `metadata["env_retries"]` / `["env_retry_reasons"]`; after that it is kept marked
    `env_error`. Every spec comes back exactly once. Reaching `max_turns` truncates the episode.
    """

    def __init__(
        self,
        make_env: Callable[[], TextEnv],
        policy: Policy,
        memory: HistoryMemory,
        max_turns: int,
        env_id: str = "",
        workers: EnvWorkers | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.make_env = make_env
        self.policy = policy
        self.memory = memory
        self.max_turns = max_turns
        self.env_id = env_id
        self.workers = workers or EnvWorkers()
        # Envs are reused across runs (building one can cost a game load): slot i serves episode i of each run.
        self.pool = make_env_pool(make_env, self.workers)
        self._lost: dict[int, str] = {}  # slots whose env was lost, not yet handled (see _restart_lost)
        self.timing = RolloutTiming()

    def collect_groups(self, tasks: list[tuple[int, int]], group_size: int, prefix: str) -> list[Group]:
        """Play `group_size` episodes of each (task_index, seed); group ids are `{prefix}/g{k}`."""
        specs = [
            EpisodeSpec(task, seed, f"{prefix}/g{k}", f"{prefix}/g{k}/r{r}")
            for k, (task, seed) in enumerate(tasks)
            for r in range(group_size)
        ]
        trajectories = self.run(specs)
        return [
            Group(group_id=f"{prefix}/g{k}", task_id=trajectories[k * group_size].task_id,
                  trajectories=trajectories[k * group_size:(k + 1) * group_size])
            for k in range(len(tasks))
        ]

    def run(self, specs: list[EpisodeSpec], after_turn: TurnHook | None = None) -> list[Trajectory]:
        """Play every episode to its end; trajectories come back in the order of `specs`.

        `after_turn`, if given, is called after every turn and may add episodes: fresh ones, or forks
        of an episode of this run (`EpisodeSpec.fork_of`). They join the next turn's batch and come
        back after `specs`, in the order they were added. A fork whose replay does not reproduce its
        source's state is dropped with a warning (see `_fork`).
        """
        self.timing = RolloutTiming()
        self._lost.clear()
        episodes = [self._episode(slot, spec) for slot, spec in enumerate(specs)]
        self._begin(episodes)
        self._restart_lost(episodes)
        live = [ep for ep in episodes if not episode_finished(ep.trajectory)]
        while live:
            requests = [
                PolicyRequest(
                    messages=self.memory.messages(ep.info["task"], ep.history, ep.obs, ep.info["admissible_actions"]),
                    info=ep.info,
                    episode=ep.trajectory.traj_id,
                    turn=len(ep.trajectory.steps),
                )
                for ep in live
            ]
            start = time.perf_counter()
            outputs = self.policy.act(requests)
            self.timing.policy_s += time.perf_counter() - start
            self.timing.policy_calls += 1
            if len(outputs) != len(requests):  # zip would leave the unanswered episodes live forever
                raise ValueError(f"the policy returned {len(outputs)} outputs for {len(requests)} requests")
            steps = [
                Step(
                    obs=episode.obs,
                    anchor=episode.info["anchor"],
                    prompt=output.prompt_text or request.messages[-1]["content"],
                    response=output.text,
                    action=None,
                    reward=0.0,
                    valid=False,
                    prompt_ids=output.prompt_ids,
                    response_ids=output.token_ids,
                    logprobs=output.logprobs,
                    entropy=output.entropy,
                )
                for episode, request, output in zip(live, requests, outputs)
            ]
            self._advance(live, steps)
            restarted = {id(ep) for ep in self._restart_lost(episodes)}
            acted = [ep for ep in live if id(ep) not in restarted]  # a restarted episode has no step to show
            live = [ep for ep in live if not episode_finished(ep.trajectory)]
            if after_turn is not None:
                added = self._add(after_turn([ep.trajectory for ep in acted], [ep.trajectory for ep in episodes]),
                                  episodes)
                self._restart_lost(episodes)
                live += [ep for ep in added if not episode_finished(ep.trajectory)]
        return [ep.trajectory for ep in episodes]

    def _add(self, specs: list[EpisodeSpec], episodes: list[_LiveEpisode]) -> list[_LiveEpisode]:
        """Start `specs` in new env slots and append them to `episodes`; returns those that started."""
        by_id = {ep.spec.traj_id: ep for ep in episodes}
        added = []
        for spec in specs:
            if spec.traj_id in by_id:  # two trajectories under one id would be trained as one
                raise ValueError(f"after_turn added an episode with traj_id {spec.traj_id!r}, which is taken")
            slot = len(episodes)
            if not spec.fork_of:
                episode = self._episode(slot, spec)
                self._begin([episode])
            elif spec.fork_of in by_id:
                episode = self._fork(slot, spec, by_id[spec.fork_of])
            else:
                raise ValueError(f"after_turn forked {spec.fork_of!r}, which is no episode of this run")
            if episode is not None:
                episodes.append(episode)
                by_id[spec.traj_id] = episode
                added.append(episode)
        return added

    def _fork(self, slot: int, spec: EpisodeSpec, source: _LiveEpisode) -> _LiveEpisode | None:
        """Replay `source`'s first `spec.fork_steps` steps in a fresh env reset to the same task and seed.

        The steps are copies of the source's (same responses, token ids, log-probs, entropies), each
        marked `info["sampled_by"]` with the trajectory that sampled it, and re-executed through
        `_advance`, so rewards, validity and history are the env's own. Envs are deterministic given
        task and seed; the replay checks it: if a replayed state's anchor differs from the source's at
        that step, or the replay ends the episode or breaks the env, the fork is dropped (None) with a
        warning rather than kept as a trajectory whose copied steps never happened in its env.
        """
        prefix = source.trajectory.steps[:spec.fork_steps]
        if (spec.task_index, spec.seed) != (source.spec.task_index, source.spec.seed) or not (
                1 <= spec.fork_steps <= len(source.trajectory.steps)):
            raise ValueError(f"fork {spec.traj_id!r} of {source.spec.traj_id!r}: a fork replays 1 to "
                             f"{len(source.trajectory.steps)} steps of the same task and seed, got {spec}")
        anchors = [s.anchor for s in source.trajectory.steps[1:spec.fork_steps + 1]]
        if len(anchors) < spec.fork_steps:  # forking after the last step: the source's current state
            anchors.append(source.info["anchor"])
        episode = self._episode(slot, spec)
        episode.trajectory.metadata.update(branch_of=source.spec.traj_id, shared_prefix_steps=spec.fork_steps)
        self._begin([episode])
        for step, expected in zip(prefix, anchors):
            if self._broken(episode) or episode.info["anchor"] != step.anchor:
                break
            replayed = copy.deepcopy(step)
            replayed.info.setdefault("sampled_by", source.spec.traj_id)
            self._advance([episode], [replayed])
            if self._broken(episode) or episode.info["anchor"] != expected:
                break
        else:
            return episode
        reason = self._lost.pop(slot, None) or episode.trajectory.metadata.get(
            "env_error", "the replayed state differs from the source's")
        logger.warning("dropped fork %s of %s after replaying %d steps: %s (is the env deterministic given task "
                       "and seed?)", spec.traj_id, source.spec.traj_id, spec.fork_steps, reason)
        return None

    def _broken(self, episode: _LiveEpisode) -> bool:
        return episode.slot in self._lost or episode_finished(episode.trajectory)

    def _episode(self, slot: int, spec: EpisodeSpec) -> _LiveEpisode:
        """A not yet started episode of `spec` in env slot `slot` (`_begin` resets its env)."""
        trajectory = Trajectory(task_id="", group_id=spec.group_id, traj_id=spec.traj_id,
                                metadata={"env_id": self.env_id, "task_index": spec.task_index, "seed": spec.seed})
        return _LiveEpisode(slot, spec, trajectory)

    def _begin(self, episodes: list[_LiveEpisode]) -> None:
        """Reset the envs of `episodes` (one pool call) to their task and seed: their first observation."""
        reply = self._call(self.pool.reset, {ep.slot: (ep.spec.seed, ep.spec.task_index) for ep in episodes})
        for episode in episodes:
            result = reply.results.get(episode.slot)
            if isinstance(result, EnvRaised):
                episode.trajectory.metadata["env_error"] = result.error
            elif isinstance(result, Reset):
                episode.obs, episode.info, episode.action_syntax = result.obs, result.info, result.action_syntax
                episode.trajectory.task_id = result.info["task_id"]
                episode.trajectory.metadata["task_type"] = result.info["task_type"]
                _record_env_counts(episode.trajectory, result.info)
            # else: lost with its worker; _restart_lost restarts it

    def _advance(self, episodes: list[_LiveEpisode], steps: list[Step]) -> None:
        """Take one turn in each episode: parse each response, step every parsed action in one pool call."""
        parsed = [self.memory.protocol.parse(step.response, ep.action_syntax) for ep, step in zip(episodes, steps)]
        actions = {ep.slot: p.action for ep, p in zip(episodes, parsed) if p.action is not None}
        start = time.perf_counter()
        reply = self._call(self.pool.step, actions) if actions else PoolReply()
        self.timing.env_s += time.perf_counter() - start
        for episode, step, response in zip(episodes, steps, parsed):
            trajectory = episode.trajectory
            if response.action is None:
                step.info["error"] = response.error
                feedback = f"(invalid response: {response.error})"
            else:
                step.action = response.action
                result = reply.results.get(episode.slot)
                if result is None:  # lost with its worker: the episode restarts (_restart_lost)
                    continue
                if isinstance(result, EnvRaised):
                    trajectory.steps.append(step)
                    trajectory.metadata["env_error"] = result.error
                    continue
                self.timing.env_steps += 1
                step.reward = result.reward
                step.valid = action_is_valid(response.action, episode.info["admissible_actions"], result.info)
                feedback = response.action
                trajectory.outcome += step.reward
                trajectory.success = bool(result.info["won"])
                trajectory.terminated = result.terminated
                trajectory.truncated = result.truncated and not result.terminated
                episode.obs, episode.info = result.obs, result.info
                _record_env_counts(trajectory, result.info)
            trajectory.steps.append(step)
            episode.history.append((step.obs, feedback))
            if not episode_finished(trajectory) and len(trajectory.steps) >= self.max_turns:
                trajectory.truncated = True

    def _call(self, method: Callable[[Any], PoolReply], payload: dict[int, Any]) -> PoolReply:
        reply = method(payload)
        self._lost.update(reply.lost)
        return reply

    def _restart_lost(self, episodes: list[_LiveEpisode]) -> list[_LiveEpisode]:
        """Restart from scratch every unfinished episode whose env was lost; returns them.

        Lost slots of finished episodes (or of no episode of this run) need nothing: their env is
        rebuilt when the slot is next reset. A restart that is itself lost counts as another retry.
        """
        touched: list[_LiveEpisode] = []
        while self._lost:
            lost, self._lost = self._lost, {}
            restart = []
            for slot, reason in sorted(lost.items()):
                if slot >= len(episodes) or episode_finished(episodes[slot].trajectory):
                    continue
                episode = episodes[slot]
                touched.append(episode)
                if self._prepare_retry(episode, reason, episodes):
                    restart.append(episode)
            if restart:
                self._begin(restart)
        return touched

    def _prepare_retry(self, episode: _LiveEpisode, reason: str, episodes: list[_LiveEpisode]) -> bool:
        """Clear `episode` for a restart (False: out of retries, it is marked env_error and kept as it is).

        The trajectory object is reset in place (hooks may hold it). A fork restarts as a fresh episode
        of its task and seed. Forks already taken from this episode keep their copied steps, which
        really were sampled; their `sampled_by` is renamed so that they do not share an identity with
        the restarted episode's new steps (ARPO counts each sampled step once by that identity).
        """
        trajectory = episode.trajectory
        retries = trajectory.metadata.get("env_retries", 0)
        reasons = [*trajectory.metadata.get("env_retry_reasons", []), reason]
        if retries >= self.workers.max_retries:
            trajectory.metadata.update(env_retry_reasons=reasons, env_error=f"env lost {len(reasons)} times, "
                                       f"{retries} retries allowed (rollout.env_max_retries); last: {reason}")
            return False
        old_id = f"{trajectory.traj_id} (attempt {retries + 1}, lost)"
        for other in episodes:
            for step in other.trajectory.steps:
                if step.info.get("sampled_by") == trajectory.traj_id:
                    step.info["sampled_by"] = old_id
        episode.spec = dataclasses.replace(episode.spec, fork_of="", fork_steps=0)
        fresh = self._episode(episode.slot, episode.spec).trajectory
        fresh.metadata.update(env_retries=retries + 1, env_retry_reasons=reasons)
        for name in ("task_id", "steps", "outcome", "success", "terminated", "truncated", "metadata"):
            setattr(trajectory, name, getattr(fresh, name))
        episode.obs, episode.info, episode.history = "", {}, []
        return True

    def close(self) -> None:
        self.pool.close()


ENV_COUNT_KEYS = ("tool_calls",)  # per-episode counts an env keeps in info, copied into trajectory.metadata


def _record_env_counts(trajectory: Trajectory, info: dict[str, Any]) -> None:
    """Copy the env's running counts (tool envs: `tool_calls`, read by SPEAR and ARPO) into the metadata."""
    for key in ENV_COUNT_KEYS:
        if key in info:
            trajectory.metadata[key] = int(info[key])


def episode_finished(trajectory: Trajectory) -> bool:
    """The episode ended: the env ended it, the step limit cut it, or its env broke."""
    return trajectory.terminated or trajectory.truncated or "env_error" in trajectory.metadata
