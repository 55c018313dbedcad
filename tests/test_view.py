"""`agent-rl view`: the report of a real tiny run and of eval folders, its data files, escaping, and the page
in headless Chromium (skipped, with the reason, where Debian's `chromium` is not installed)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_rl.cli import main
from agent_rl.data import Step, Trajectory
from agent_rl.eval.tables import EpisodeRecord, EvalProtocol, summarize, write_tables
from agent_rl.io import read_trajectories, write_json, write_trajectories
from agent_rl.view import render_report
from agent_rl.view.browser import chromium_path, open_page
from agent_rl.view.render import js_json
from agent_rl.view.serve import make_server

HOSTILE = '<script>alert(1)</script><img src=x onerror="document.body.dataset.pwned=1">'
needs_chromium = pytest.mark.skipif(chromium_path() is None,
                                    reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def tiny_report(tiny_run: Path) -> Path:
    return render_report(tiny_run, tiny_run / "view").parent


def hostile_step(valid: bool) -> Step:
    return Step(obs=f"You see a note: {HOSTILE}", anchor="room", prompt=f"Task: {HOSTILE}",
                response=f"<think>{HOSTILE}</think><action>read {HOSTILE}</action>",
                action=f"read {HOSTILE}" if valid else None, reward=0.0, valid=valid, info={"error": HOSTILE})


@pytest.fixture
def hostile_eval(tmp_path: Path) -> Path:
    """An eval folder (the harness's files) whose env and model text try to inject markup and script."""
    episodes = [
        Trajectory(task_id="t0", group_id="seed0", traj_id="seed0/ep00000", steps=[hostile_step(True)], outcome=1.0,
                   success=True, terminated=True, metadata={"seed": 0, "task_type": HOSTILE}),
        Trajectory(task_id="t1", group_id="seed0", traj_id="seed0/ep00001", steps=[hostile_step(False)] * 2,
                   truncated=True, metadata={"seed": 0, "task_type": "plain", "env_error": HOSTILE}),
    ]
    out = tmp_path / "eval"
    protocol = EvalProtocol(env_id="hostile-v0", split="test", policy=HOSTILE, seeds=(0,), episodes_per_seed=2,
                            catalog_size=2, max_steps=2, success_definition=HOSTILE)
    write_trajectories(out / "episodes.jsonl", episodes)
    write_json(out / "metadata.json", {"protocol": protocol.to_dict()})
    write_tables(out, summarize(EpisodeRecord.from_trajectory(t, 0) for t in episodes), protocol)
    return out


def read_data(path: Path) -> Any:
    """The JSON payload of one of the report's data/*.js files."""
    text = path.read_text()
    match = re.fullmatch(r'window\.AGENT_RL_SUMMARY = (.*);\n|agentRlChunk\("[^"]*", (.*)\);\n', text, re.DOTALL)
    assert match, f"{path} is not a report data file"
    return json.loads(match.group(1) or match.group(2))


# --- the data files ---------------------------------------------------------------------------------


def test_run_report_holds_every_episode_with_its_advantages(tiny_run: Path, tiny_report: Path):
    summary = read_data(tiny_report / "data" / "summary.js")
    assert [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for entry in summary["iterations"]:
        written = read_trajectories(tiny_run / "trajectories" / f"iter-{entry['iteration']:06d}.jsonl")
        shown = read_data(tiny_report / "data" / f"{entry['chunk']}.js")
        prompts = read_data(tiny_report / "data" / f"{entry['chunk']}.prompts.js")
        assert prompts == [[s.prompt for s in t.steps] for t in written]
        assert [e["id"] for e in shown] == [t.traj_id for t in written] and entry["episodes"] == len(written) == 4
        for episode, trajectory in zip(shown, written, strict=True):
            assert [s["advantage"] for s in episode["steps"]] == [s.advantage for s in trajectory.steps]
            assert [s["obs"] for s in episode["steps"]] == [s.obs for s in trajectory.steps]
            assert all(s.advantage is not None for s in trajectory.steps)  # the trainer wrote them
    assert [e["name"] for e in summary["evals"]] == ["before", "after_sft", "after_rl"]
    assert summary["evals"][-1]["table"][-1]["task_type"] == "overall"
    assert [row["iteration"] for row in summary["metrics"] if "train/success_rate" in row] == [1, 2]
    assert "max_turns: 3" in summary["config"]


def test_eval_report_lists_failures_first_and_keeps_text_exact(hostile_eval: Path, tmp_path: Path):
    report = render_report(hostile_eval, tmp_path / "report").parent
    summary = read_data(report / "data" / "summary.js")
    assert summary["kind"] == "eval" and summary["evals"][0]["protocol"]["policy"] == HOSTILE
    episodes = read_data(report / "data" / f"{summary['evals'][0]['chunk']}.js")
    assert [e["id"] for e in episodes] == ["seed0/ep00001", "seed0/ep00000"]  # the failure first
    assert episodes[1]["steps"][0]["obs"] == f"You see a note: {HOSTILE}"
    assert episodes[0]["steps"][0]["error"] == HOSTILE
    assert "<" not in (report / "data" / f"{summary['evals'][0]['chunk']}.js").read_text()


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!-- x", "line\u2028sep\u2029para", "é 🍎"])
def test_js_json_cannot_close_a_script_or_break_a_line(text: str):
    literal = js_json({"obs": text})
    assert "<" not in literal and "\u2028" not in literal and "\u2029" not in literal
    assert json.loads(literal) == {"obs": text}


def test_shared_anchors_link_steps_across_rollouts():
    from agent_rl.view.render import episode_records

    def traj(traj_id: str, group: str, anchors: list[str]) -> Trajectory:
        steps = [Step(obs="o", anchor=a, prompt="p", response="r", action="a", reward=0.0, valid=True) for a in anchors]
        return Trajectory(task_id="t", group_id=group, traj_id=traj_id, steps=steps)

    records = episode_records([traj("r0", "g", ["s0", "s1"]), traj("r1", "g", ["s0", "s2"]), traj("r2", "h", ["s1"])])
    links = [[s["link"] for s in r["steps"]] for r in records]
    assert links == [[1, None], [1, None], [None]]  # s1 is in two groups once each: no step group


# --- the command line and the server --------------------------------------------------------------------


def test_view_command_writes_the_report_and_says_where(tiny_run: Path, tmp_path: Path, capsys):
    assert main(["view", str(tiny_run), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").resolve().as_uri() in capsys.readouterr().out
    assert main(["view", str(tiny_run), "--out", str(tmp_path / "r")]) == 0  # an earlier report is replaced


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a directory"),
    ("empty", "is neither a training run"),
    ("out-is-the-run", "would replace the folder being viewed"),
    ("out-is-a-folder", "exists and is not an earlier report"),
])
def test_view_bad_input_is_one_line(tiny_run: Path, tmp_path: Path, capsys, case: str, message: str):
    (tmp_path / "empty").mkdir()
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    argv = {"missing": [str(tmp_path / "nope")], "empty": [str(tmp_path / "empty")],
            "out-is-the-run": [str(tiny_run), "--out", str(tiny_run)],
            "out-is-a-folder": [str(tiny_run), "--out", str(tmp_path / "keep")]}[case]
    assert main(["view", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine" and (tiny_run / "config.yaml").is_file()


@pytest.fixture
def served(tiny_report: Path) -> Iterator[str]:
    server = make_server(tiny_report, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_serve_answers_on_loopback_only(served: str):
    assert served.startswith("http://127.0.0.1:")
    for path in ("/index.html", "/data/summary.js", "/data/iter-000001.js"):
        with urllib.request.urlopen(served + path, timeout=10) as answer:
            assert answer.status == 200 and answer.read()


# --- the page in a real browser -----------------------------------------------------------------------


@needs_chromium
def test_page_renders_the_curves_and_every_episode_of_an_iteration(tiny_run: Path, tiny_report: Path):
    index = (tiny_report / "index.html").resolve().as_uri()
    overview = open_page(index)
    assert overview.console == [] and 'data-view="overview"' in overview.dom
    assert overview.dom.count("<svg") >= 4 and "Evaluation: after_rl" in overview.dom
    page = open_page(index + "#iter=2")
    assert page.console == [] and 'data-view="iter-000002"' in page.dom
    shown = re.findall(r'<article class="episode \w+" data-traj-id="([^"]+)"', page.dom)
    assert shown == [t.traj_id for t in read_trajectories(tiny_run / "trajectories" / "iter-000002.jsonl")]
    assert page.dom.count('class="adv"') == sum(len(t.steps) for t in read_trajectories(
        tiny_run / "trajectories" / "iter-000002.jsonl"))


@needs_chromium
def test_page_shows_injected_markup_as_text_and_runs_none_of_it(hostile_eval: Path, tmp_path: Path):
    report = render_report(hostile_eval, tmp_path / "report")
    page = open_page(report.resolve().as_uri())
    assert page.console == [] and 'data-view="eval-eval"' in page.dom
    assert "data-pwned" not in page.dom and "alert(1)</script>" not in page.dom and "<img" not in page.dom
    assert page.dom.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8  # obs, think, action, task type, ...
    assert len(re.findall(r"<article ", page.dom)) == 2


@needs_chromium
def test_screenshot_of_an_iteration(tiny_report: Path, tmp_path: Path):
    png = tmp_path / "iteration.png"
    page = open_page((tiny_report / "index.html").resolve().as_uri() + "#iter=1", screenshot=png, size=(1200, 800))
    assert page.console == []
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") == 1200
    assert png.stat().st_size > 20_000  # text and cards, not a blank page


# Drives the page's own controls (select, search box, state chip, prompt) and writes what it saw into the DOM.
PROBE = """
setTimeout(() => {
  const seen = [], count = () => document.querySelectorAll("article.episode").length;
  const set = (selector, value, event) => {
    const input = document.querySelector(selector); input.value = value; input.dispatchEvent(new Event(event));
  };
  seen.push("all=" + count());
  set('select[aria-label="outcome"]', "success", "change"); seen.push("success=" + count());
  set('select[aria-label="outcome"]', "failure", "change"); seen.push("failure=" + count());
  set('select[aria-label="outcome"]', "all", "change");
  set('input[type=search]', "READ <SCRIPT>", "input"); seen.push("search=" + count());
  set('input[type=search]', "no such text", "input"); seen.push("nothing=" + count());
  set('input[type=search]', "", "input");
  document.querySelector('input[type=checkbox]').click(); seen.push("invalid=" + count());
  document.querySelector("button.chip").click(); seen.push("linked=" + document.querySelectorAll("li.linked").length);
  const prompt = document.querySelector("details.prompt"); prompt.open = true;
  setTimeout(() => {
    const shown = prompt.querySelectorAll("pre");
    seen.push("prompt=" + shown.length + ":" + (shown.length === 1 && shown[0].textContent.startsWith("Task: <script>")));
    document.body.dataset.probe = seen.join(",");
  }, 500);
}, 300);
"""


@needs_chromium
def test_filters_search_and_step_links_work_in_the_page(hostile_eval: Path, tmp_path: Path):
    report = render_report(hostile_eval, tmp_path / "report").parent
    (report / "probe.js").write_text(PROBE)
    page_html = (report / "index.html").read_text().replace('<script src="app.js"></script>',
                                                            '<script src="app.js"></script><script src="probe.js"></script>')
    (report / "probe.html").write_text(page_html)
    page = open_page((report / "probe.html").resolve().as_uri())
    assert page.console == []
    probe = re.search(r'data-probe="([^"]*)"', page.dom)
    assert probe, "the probe did not finish"
    # 2 episodes, 1 won; both hold the text; only the failure has invalid steps; with that filter still on,
    # the chip of its first step highlights both of its steps (one state: equal anchors in one group)
    assert probe.group(1) == "all=2,success=1,failure=1,search=2,nothing=0,invalid=1,linked=2,prompt=1:true"


def test_serve_on_a_taken_port_is_one_line(tiny_run: Path, tmp_path: Path, capsys):
    taken = make_server(tmp_path, 0)
    try:
        argv = ["view", str(tiny_run), "--out", str(tmp_path / "r"), "--serve", "--port", str(taken.server_address[1])]
        assert main(argv) == 2
    finally:
        taken.server_close()
    err = capsys.readouterr().err
    assert "cannot serve on 127.0.0.1:" in err and "pick another --port" in err and err.count("\n") == 1


def test_the_benchmark_s_synthetic_run_renders_whole(tmp_path: Path):
    from experiment_scripts import load_experiment

    bench = load_experiment("bench_view")
    run = bench.build_run(tmp_path, episodes=32, per_iteration=16, group_size=4, steps=3, eval_episodes=8)
    report = render_report(run, tmp_path / "report").parent
    summary = read_data(report / "data" / "summary.js")
    assert [(it["episodes"], it["groups"]) for it in summary["iterations"]] == [(16, 4), (16, 4)]
    assert summary["evals"][0]["episodes"] == 8 and len(summary["metrics"]) == 2
    shown = read_data(report / "data" / "iter-000002.js")
    assert any(s["link"] is not None for e in shown for s in e["steps"])  # repeated states are linked
