"""The README's screenshot of `agent-rl view`: a short real run of the CPU demo's recipe, rendered and shot.

    python experiments/viewer_screenshot.py --out runs/viewer_demo --png docs/viewer.png

It trains the demo config (tiny model, SFT, GiGPO) on a small slice of the TextWorld demo quests (32 train
and 8 test games, generated here) for a few iterations, so the report shows wins and losses side by side,
GiGPO's advantages and its step groups; then renders the report and takes a screenshot of one iteration
in headless Chromium (Debian's `chromium`). A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent_rl.envs.textworld.suites import SUITES, TEST_SEED_OFFSET, Suite

from agent_rl.cli import DEMO_CONFIG
from agent_rl.config import load_config
from agent_rl.train.pipeline import TrainingRun
from agent_rl.view import render_report
from agent_rl.view.browser import open_page

SUITE = "viewer_demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/viewer_demo", help="run directory")
    parser.add_argument("--png", default="docs/viewer.png", help="where the screenshot goes")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--show", default="", help="page to shoot, e.g. iter=4 (default: the last iteration)")
    args = parser.parse_args()

    demo = SUITES["demo"]
    SUITES[SUITE] = Suite(name=SUITE, generator=demo.generator, variants=demo.variants, train_seeds=tuple(range(32)),
                          test_seeds=tuple(range(TEST_SEED_OFFSET, TEST_SEED_OFFSET + 8)),
                          description="32 train / 8 test games of the demo suite's quests")
    out = Path(args.out)
    if not (out / "trajectories").is_dir():
        config = load_config(DEMO_CONFIG, [
            f"env.kwargs.suite={SUITE}", "sft.tasks=24", "sft.epochs=40", f"iterations={args.iterations}",
            "rollout.tasks_per_iteration=4", "rollout.group_size=4", "eval.every=0", "eval.before=false",
            f"out_dir={out}",
        ])
        TrainingRun(config).run()
    index = render_report(out, out / "view")
    show = args.show or f"iter={args.iterations}"
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    page = open_page(index.resolve().as_uri() + "#" + show, screenshot=png.resolve(), size=(1400, 1000))
    print(f"report {index}\nscreenshot {png} ({page.seconds:.1f} s in Chromium); console: {page.console or 'clean'}")


if __name__ == "__main__":
    main()
