"""`SearchEnv`: question answering with a search engine, in the Search-R1 protocol (see `protocol`).

An episode: the question; each `<search>q</search>` returns the top `top_k` passages of a BM25 index
over the corpus; `<answer>a</answer>` ends it with reward 1 if `a` exactly matches a gold answer after
normalisation, else 0; `max_steps` without an answer truncates it (reward 0). Anything else gets the
protocol's corrective message and is an invalid step. The passages are the next observation, which
enters the next prompt, never a response: retrieved text is masked out of the loss by construction.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

from agent_rl.envs.search.data import Question, load_corpus, load_questions, qa_file
from agent_rl.envs.search.protocol import (
    INVALID_ACTION_MESSAGE,
    exact_match,
    fold_accents,
    format_passages,
    normalize_answer,
    parse_action,
)
from agent_rl.tools.bm25 import BM25Index, cached_index

from agent_rl.env_api import TextEnv, check_max_steps, to_printable
from agent_rl.io import cache_root

INSTRUCTION = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get "
    "new information. After reasoning, if you find you lack some knowledge, you can call a search engine with "
    "<action><search> query </search></action> and it will return the top searched results between <information> "
    "and </information>. You can search as many times as you want. If you find no further external knowledge "
    "needed, you can directly provide the answer with <action><answer> answer </answer></action>, without detailed "
    "illustrations. For example, <action><answer> Beijing </answer></action>. Question: "
)
# Search-R1's instruction names placeholders ("<search> query </search>") and asks for <think>/<action> tags:
# a small instruct model under the action-only protocol copies the placeholder words ("<search>query</search>",
# experiments/README.md). "plain" says the same without tags and with a filled-in example instead.
PLAIN_INSTRUCTION = (
    "Answer the question. To look something up, write <search>, then the words to search for, then </search>: "
    "the top passages come back between <information> and </information>. When you know the answer, write "
    "<answer>, then the answer in a few words, then </answer>. For example: <search>capital city of France"
    "</search>, then <answer>Paris</answer>. Question: "
)
INSTRUCTIONS = {"search-r1": INSTRUCTION, "plain": PLAIN_INSTRUCTION}
TEMPLATES = ["<search>QUERY</search>", "<answer>ANSWER</answer>"]


@functools.lru_cache(maxsize=4)
def corpus_index(corpus: str, cache_dir: str | None) -> tuple[dict[str, str], BM25Index]:
    """The passages by id and their BM25 index, loaded once per process (every env of a batch shares them)."""
    passages = load_corpus(corpus)
    index = cached_index(BM25Index, passages.ids, passages.contents, cache_root(cache_dir) / "search")
    return dict(zip(passages.ids, passages.contents)), index


@functools.lru_cache(maxsize=8)
def questions_of(path: str, split: str) -> tuple[Question, ...]:
    return tuple(load_questions(qa_file(path, split)))


class SearchEnv(TextEnv):
    """Search-R1 QA over `corpus` (JSONL) with the questions of `split` from `path` (file or folder)."""

    won_means: ClassVar[str] = "the normalised answer exactly matches a gold answer"

    def __init__(
        self,
        corpus: str | os.PathLike[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        split: str = "train",
        top_k: int = 3,
        max_steps: int = 4,
        expert: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        name: str = "",
        instruction: str = "search-r1",
    ) -> None:
        super().__init__()
        if instruction not in INSTRUCTIONS:
            raise ValueError(f"instruction must be one of {sorted(INSTRUCTIONS)}, got {instruction!r}")
        self.instruction = INSTRUCTIONS[instruction]
        if corpus is None or path is None:
            raise ValueError("SearchEnv needs corpus=<passages .jsonl> and path=<QA file, or folder with "
                             "{split}.parquet / {split}.jsonl>")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        self.passages, self.index = corpus_index(str(Path(corpus).expanduser().resolve()),
                                                 None if cache_dir is None else str(cache_dir))
        self.questions = questions_of(str(Path(path).expanduser().resolve()), split)
        self.split = split
        self.top_k = top_k
        self.max_steps = check_max_steps(max_steps)
        self.expert = expert
        self.name = name or f"{Path(path).name} QA over {Path(corpus).name}"
        self._question: Question | None = None
        self._searches = 0
        self._state = hashlib.sha1()  # the normalised queries so far: the anchor in O(1) a step
        self._steps = 0
        self._done = True

    @property
    def num_tasks(self) -> int:
        return len(self.questions)

    @property
    def task_set(self) -> str:
        return f"{self.name} ({self.split}, {len(self.questions)} questions, {len(self.passages)} passages)"

    def search(self, query: str) -> str:
        """The `<information>` block for `query`: the top passages, best first."""
        found = self.index.search(query, self.top_k)
        if not found:
            return "<information>No passage matches the query.</information>"
        return format_passages([self.passages[doc_id] for doc_id in found])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._question = self.questions[self.task_index(options)]
        self._searches = 0
        self._state = hashlib.sha1()
        self._steps = 0
        self._done = False
        return "No search yet.", self._info(valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self._question is None:
            raise RuntimeError("the episode is over: call reset() first")
        self._steps += 1
        parsed = parse_action(action)
        reward, terminated, won = 0.0, False, False
        if parsed.kind == "search" and parsed.content:
            obs = self.search(parsed.content)
            self._searches += 1
            self._state.update((normalize_answer(parsed.content) + "\n").encode())
        elif parsed.kind == "answer":
            won = exact_match(parsed.content, self._question.answers)
            reward, terminated = float(won), True
            obs = "Answer given."
        else:
            obs = INVALID_ACTION_MESSAGE
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        info = self._info(valid=parsed.kind == "answer" or (parsed.kind == "search" and bool(parsed.content)))
        info["won"] = won
        return to_printable(fold_accents(obs)), reward, terminated, truncated, info

    def _info(self, valid: bool) -> dict[str, Any]:
        question = self._question
        assert question is not None
        searched = self._state.hexdigest()[:16]
        info: dict[str, Any] = {
            "admissible_actions": list(TEMPLATES),
            "anchor": f"{question.id}|{searched}",  # the state: the question and the searches made
            "won": False,
            "task_type": question.source,
            "task_id": question.id,
            "task": to_printable(fold_accents(self.instruction + question.question)),
            "tool_calls": self._searches,
            "action_valid": valid,
        }
        if self.expert:
            info["expert_action"] = self._expert_action(question)
        return info

    def _expert_action(self, question: Question) -> str:
        """The oracle: search the question once, then answer the first gold answer."""
        if not self._searches and self._steps == 0:
            return f"<search>{question.question}</search>"
        return f"<answer>{question.answers[0]}</answer>"
