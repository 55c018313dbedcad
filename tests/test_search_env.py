"""The Search-R1 env: protocol, exact match, loaders (on the shared real samples), BM25 cache, demo set, expert, CLI."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest

pytest.importorskip("bm25s")

from agent_rl.envs.search.data import load_corpus, load_questions, qa_file
from agent_rl.envs.search.env import SearchEnv
from agent_rl.envs.search.protocol import (
    INVALID_ACTION_MESSAGE,
    exact_match,
    format_passages,
    normalize_answer,
    parse_action,
)
from agent_rl.tools.bm25 import BM25Index, cached_index

from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.registry import make
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.memory import HistoryMemory

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "search_r1"
CORPUS_SAMPLE = SAMPLES / "wiki18_corpus_sample.jsonl"
NQ_SAMPLE = SAMPLES / "nq_search_test_head100.parquet"
needs_samples = pytest.mark.skipif(not NQ_SAMPLE.exists(), reason=f"the shared Search-R1 samples are not in {SAMPLES}")


# --- protocol -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "normalized"), [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  An   apple,\ta day ", "apple day"),
    ("Theatre of the Absurd", "theatre of absurd"),  # articles only as whole words
    ("U.S.A.", "usa"),
    ("May 18, 2018", "may 18 2018"),
    ("Wilhelm Conrad Röntgen", "wilhelm conrad rontgen"),  # accents folded: observations are ASCII
    ("-1", "1"),
    ("", ""),
])
def test_normalize_answer(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_exact_match_against_any_gold_answer() -> None:
    assert exact_match("the  Eiffel tower.", ["Tour Eiffel", "Eiffel Tower"])
    assert exact_match("Wilhelm Conrad Rontgen", ["Wilhelm Conrad Röntgen"])
    assert not exact_match("Eiffel", ["Eiffel Tower"]) and not exact_match("", ["Eiffel Tower"])


@pytest.mark.parametrize(("body", "kind", "content"), [
    ("<search> capital of France </search>", "search", "capital of France"),
    ("<answer>Paris</answer>", "answer", "Paris"),
    ("<search>a</search><answer>b</answer>", "search", "a"),  # the first block counts, as in Search-R1
    ("I think <answer>Paris</answer> is right", "answer", "Paris"),
    ("Paris", "invalid", ""),
    ("<search>a</answer>", "invalid", ""),
    ("search[capital of France]", "invalid", ""),
])
def test_parse_action(body: str, kind: str, content: str) -> None:
    parsed = parse_action(body)
    assert (parsed.kind, parsed.content) == (kind, content)


def test_passages_render_as_search_r1_does() -> None:
    text = format_passages(['"Paris"\nParis is the capital of France.', '"Lyon"\nLyon is a city.\nIt is old.'])
    assert text == ('<information>Doc 1(Title: "Paris") Paris is the capital of France.\n'
                    'Doc 2(Title: "Lyon") Lyon is a city.\nIt is old.</information>')


# --- loaders ------------------------------------------------------------------------------------------------


@needs_samples
def test_loaders_read_the_shared_search_r1_samples() -> None:
    pytest.importorskip("pyarrow", reason="parquet QA sets need the search extra")
    corpus = load_corpus(CORPUS_SAMPLE)
    assert len(corpus.ids) == 10 and corpus.ids[0] == "0"
    assert corpus.contents[0].startswith('"Evan Morris"\nEvan Morris Evan L. Morris (January 26, 1977')
    questions = load_questions(NQ_SAMPLE)
    assert len(questions) == 100
    first = questions[0]
    assert (first.id, first.question, first.answers, first.source) == (
        "test_0", "who got the first nobel prize in physics?", ("Wilhelm Conrad Röntgen",), "nq")


def test_jsonl_qa_and_parquet_fallback_fields(tmp_path: Path) -> None:
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"id": "q1", "question": " Who? ", "golden_answers": ["Me", "I"], "data_source": "toy"}) + "\n\n"
        + json.dumps({"question": "What?", "reward_model": {"ground_truth": {"target": "it"}}}) + "\n")
    assert qa_file(tmp_path, "test") == tmp_path / "test.jsonl"
    first, second = load_questions(qa_file(tmp_path, "test"))
    assert (first.id, first.question, first.answers, first.source) == ("q1", "Who?", ("Me", "I"), "toy")
    assert (second.id, second.answers, second.source) == ("1", ("it",), "qa")


@pytest.mark.parametrize(("name", "text", "error"), [
    ("c.jsonl", '{"id": "0"}\n', r"c.jsonl:1: a corpus row needs a 'contents' string"),
    ("c.jsonl", '{"id": "0", "contents": "t\\nx"}\n[1]\n', r"c.jsonl:2: expected a JSON object, got list"),
    ("c.jsonl", "{oops\n", r"c.jsonl:1: not a JSON line"),
    ("c.jsonl", "\n", "holds no passages"),
])
def test_corpus_errors_name_the_line(tmp_path: Path, name: str, text: str, error: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=error):
        load_corpus(tmp_path / name)


def test_qa_errors(tmp_path: Path) -> None:
    (tmp_path / "qa.jsonl").write_text(json.dumps({"question": "Who?"}) + "\n")
    with pytest.raises(ValueError, match=r"row 1: a QA row needs 'question'.*'golden_answers'"):
        load_questions(tmp_path / "qa.jsonl")
    with pytest.raises(ValueError, match=r"expected a \.parquet or \.jsonl file"):
        load_questions(tmp_path / "qa.csv")
    with pytest.raises(FileNotFoundError, match=r"no QA set for split 'dev'"):
        qa_file(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="corpus .* not found"):
        load_corpus(tmp_path / "missing.jsonl")


# --- the index ----------------------------------------------------------------------------------------------


def test_bm25_index_is_cached_on_disk_and_reloads_the_same(tmp_path: Path) -> None:
    ids = ["a", "b", "c"]
    texts = ["the cat sat on the mat", "dogs chase cats in the park", "stock markets fell on monday"]
    index = cached_index(BM25Index, ids, texts, tmp_path)
    folders = list(tmp_path.glob("bm25-*"))
    assert len(folders) == 1 and (folders[0] / "ids.json").is_file()
    assert cached_index(BM25Index, ids, texts, tmp_path) is index  # this process's copy
    assert BM25Index.load(folders[0]).search("cats in the park mat", 3) == index.search("cats in the park mat", 3) == ["b", "a"]
    assert index.search("zebra", 3) == []  # no shared term, no result
    with pytest.raises(ValueError, match="one text per id"):
        BM25Index.from_documents(["a"], [])


# --- the env ------------------------------------------------------------------------------------------------


def demo_env(split: str = "test", **kwargs) -> SearchEnv:
    return make("search/demo-v0", split=split, **kwargs)


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_demo_question_is_answerable_from_its_top_passages(split: str) -> None:
    env = demo_env(split)
    for question in env.questions:
        found = [env.passages[i] for i in env.index.search(question.question, env.top_k)]
        assert any(normalize_answer(gold) in normalize_answer(p) for p in found for gold in question.answers), \
            question.question


def test_an_episode_search_invalid_answer() -> None:
    env = demo_env(max_steps=4)
    obs, info = env.reset(options={"task_index": 0})
    question = env.questions[0]
    assert info["task"].endswith("Question: " + question.question) and info["tool_calls"] == 0
    obs, reward, terminated, truncated, info = env.step(f"<search>{question.question}</search>")
    assert obs.startswith("<information>Doc 1(Title: ") and obs.count("Doc ") == 3 and obs.endswith("</information>")
    assert (reward, terminated, truncated, info["action_valid"], info["tool_calls"]) == (0.0, False, False, True, 1)
    searched = info["anchor"]
    for bad in ("the nearest enclosing loop", "<search>  </search>"):
        obs, reward, terminated, truncated, info = env.step(bad)
        assert obs == INVALID_ACTION_MESSAGE and not info["action_valid"] and info["anchor"] == searched
    obs, reward, terminated, truncated, info = env.step("<answer>The nearest enclosing loop.</answer>")
    assert (reward, terminated, truncated, info["won"]) == (1.0, True, False, True)


def test_the_plain_instruction_has_no_tags_nor_placeholders_and_the_same_question() -> None:
    papers, plain = (demo_env(instruction=kind).reset(options={"task_index": 0})[1]["task"]
                     for kind in ("search-r1", "plain"))
    assert "<think>" in papers and "<search> query </search>" in papers
    assert "<think>" not in plain and "<action>" not in plain and " query " not in plain
    assert plain.rpartition("Question: ")[2] == papers.rpartition("Question: ")[2]
    with pytest.raises(ValueError, match="instruction must be one of"):
        demo_env(instruction="r1")


def test_a_wrong_answer_and_the_turn_limit() -> None:
    env = demo_env(max_steps=2)
    env.reset(options={"task_index": 0})
    assert env.step("<answer>the outer loop</answer>")[1:4] == (0.0, True, False)
    env.reset(options={"task_index": 0})
    env.step("<search>loops</search>")
    _, reward, terminated, truncated, info = env.step("<search>break</search>")
    assert (reward, terminated, truncated, info["won"]) == (0.0, False, True, False)


def test_search_results_come_from_the_index() -> None:
    env = demo_env()
    assert env.search("nonlocal statement enclosing scope").startswith(
        "<information>Doc 1(Title: \"The 'nonlocal' statement\")")
    assert env.search("zzzqqq") == "<information>No passage matches the query.</information>"


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_expert_searches_then_answers_and_scores_one(split: str) -> None:
    make_env = functools.partial(demo_env, split, expert=True)
    collector = Collector(make_env, ExpertPolicy(), HistoryMemory(), max_turns=4)
    count = make_env().num_tasks
    trajectories = collector.run([EpisodeSpec(i, 0, f"g{i}", f"t{i}") for i in range(count)])
    assert all(t.success and t.outcome == 1.0 for t in trajectories)
    assert all([s.action[:8] for s in t.steps] == ["<search>", "<answer>"] for t in trajectories)
    assert all(t.metadata["tool_calls"] == 1 for t in trajectories)


@needs_samples
def test_user_data_env_on_the_shared_nq_sample(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="parquet QA sets need the search extra")
    env = make("search/nq-v0", corpus=str(CORPUS_SAMPLE), path=str(NQ_SAMPLE), split="test", expert=True,
               cache_dir=str(tmp_path))
    assert env.num_tasks == 100 and "nq_search_test_head100.parquet" in env.task_set
    _, info = env.reset(options={"task_index": 0})
    obs, *_ = env.step(info["expert_action"])
    assert obs.startswith("<information>Doc 1(Title: ")
    assert env.step("<answer>Wilhelm Conrad Rontgen</answer>")[1] == 1.0  # ASCII spelling of the gold answer


def test_nq_needs_its_data() -> None:
    with pytest.raises(ValueError, match="needs corpus=.*path="):
        make("search/nq-v0")
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        demo_env(top_k=0)


def test_cli_eval_with_the_expert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent_rl.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--env", "search/demo-v0", "--policy", "expert", "--max-turns", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "python-docs demo (test, 8 questions, 373 passages)" in printed
    with (out / "table.csv").open() as handle:
        rows = {row["task_type"]: row for row in csv.DictReader(handle)}
    assert float(rows["overall"]["success_mean"]) == 1.0 and set(rows) == {"python_docs", "overall"}
