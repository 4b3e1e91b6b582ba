"""The inspect view (Model screen, `i`): a checkpoint and a text built so that one token is
unpredictable show that token as the hardest, with the model's top-5 there; the loss levels stay
apart with 16 colours or none; the hardest held-out documents of a real run are listed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from conftest import settle, wait_for
from pattern_model import ODD, train_pattern_model

from core import config, runs as core_runs


@pytest.fixture(scope="module")
def pattern_ckpt(tmp_path_factory):
    return train_pattern_model(tmp_path_factory.mktemp("pattern-run"))[2]


async def test_the_unpredictable_token_is_shown_as_the_hardest(make, pattern_ckpt):
    from tui.screens.inspect import InspectScreen
    from tui.widgets.loss_view import LossView

    app = make(mode="model")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen), 5)
        screen = app.screen
        screen.spec = str(pattern_ckpt)
        field = screen.query_one("#inspect-text")
        field.value = ODD
        field.focus()
        await pilot.press("enter")
        view = screen.query_one(LossView)
        await wait_for(pilot, lambda: bool(view.spans), 60)
        assert view.hardest == len(view.spans) - 1 and "mat" in view.spans[-1].text
        assert view.cursor == view.hardest and view.levels()[-1] == 4
        top = str(screen.query_one("#inspect-top").render())
        assert "' par'" in top and "rank" in top  # the model expected " park"
        await pilot.press("home")
        assert view.cursor == 0 and "token 't'" in str(screen.query_one("#inspect-top").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectScreen)


async def test_a_model_that_is_not_there_is_a_notification(make):
    from tui.screens.inspect import InspectScreen

    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("i", "h")  # the preset's pretraining run does not exist yet
        await wait_for(pilot, lambda: any(n.title == "cannot inspect" for n in app._notifications), 30)
        assert isinstance(app.screen, InspectScreen) and not app.screen.documents


def test_the_loss_levels_differ_in_shape_without_colour():
    from rich.style import Style

    from tui.widgets.loss_view import level_style

    def shape(level: int) -> tuple:
        s = Style.parse(level_style(level, few_colours=True))
        return s.bold, s.underline, s.italic, s.dim

    assert len({shape(level) for level in range(5)}) == 5
    assert len({level_style(level, False) for level in range(5)}) == 5


@pytest.mark.slow  # a real (small) pretraining run: its validation documents
async def test_h_lists_the_hardest_held_out_documents(make, lab):
    from core.stages import pretrain
    from core.token_loss import held_out_documents, load_scorer
    from tui.screens.inspect import InspectScreen
    from tui.widgets.loss_view import LossView

    preset = config.load(lab / "small.toml", ["train.max_steps=10", "train.sample_every=0"])
    run = core_runs.create_run(preset.name, "pretrain", config.dump(preset), root=lab / "runs")
    pretrain.run(preset, run.path, core_runs.EventLog(run.events_path), threading.Event())
    run.write_status(state="finished")
    _, tok, meta = load_scorer(run.path, root=lab / "runs")
    docs = held_out_documents(meta["path"], tok)
    assert 1 < len(docs) <= 32 and all(d.strip() for d in docs)
    env = {**os.environ, "LLMLAB_HOME": str(lab), "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "core.cli", "inspect", str(run.path), "--held-out", "--hardest", "2"],
                          env=env, cwd=lab, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("mean loss") == 2
    app = make(mode="model")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("i", "h")
        screen = app.screen
        assert isinstance(screen, InspectScreen)
        await wait_for(pilot, lambda: bool(screen.documents), 60)
        means = [r.mean_loss for r in screen.documents]
        assert means == sorted(means, reverse=True) and {r.text for r in screen.documents} <= set(docs)
        assert screen.query_one(LossView).spans == screen.documents[0].tokens
