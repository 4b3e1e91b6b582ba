"""The eval report: lineage, every evaluation as tables and bars, confusion matrix, samples, export."""

from __future__ import annotations

from conftest import wait_for
from model_screens_helpers import CLASSIFY, app_with, models  # noqa: F401
from screen_text import screen_text

from tui.screens.eval_report import EvalScreen, scores_of
from tui.widgets.confusion import ConfusionMatrix
from tui.widgets.model_picker import ModelPicker
from tui.widgets.score_bars import ScoreBars


async def test_report_of_an_instruction_model(make, models, lab):
    app = app_with(make, "eval", preset="tiny")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, EvalScreen)
        await pilot.press("m")
        await pilot.pause(0.5)
        assert isinstance(app.screen, ModelPicker)
        app.screen.query_one("#picker-spec").value = str(models["instruct"])
        app.screen.query_one("#picker-spec").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.card is not None and screen.card["checkpoint"] == str(models["instruct"]))
        await pilot.pause(0.2)
        card = screen.card
        assert [s["stage"] for s in card["lineage"]] == ["pretrain", "finetune"]
        labels = {s.label: s for s in scores_of(card)}
        choice = next(s for k, s in labels.items() if k.startswith("choice acc"))
        assert choice.value == 0.41 and choice.reference == 0.25 and abs(choice.low - (0.41 - 1.96 * 0.049)) < 1e-9
        judge = next(s for k, s in labels.items() if k.startswith("judge"))
        assert (judge.value, judge.low, judge.high) == (0.55, 0.48, 0.62)
        win = next(s for k, s in labels.items() if k.startswith("win rate"))
        assert win.reference == 0.5
        assert not screen.query_one(ConfusionMatrix).display
        text = screen_text(app)
        assert "Lineage" in text and "pretrain from random init" in text and "finetune instruct" in text
        # the tables scroll below: check the rendered report through the scroll container's widgets
        tables = str(screen.query_one("#ev-tables").render())
        assert tables  # rendered
        await pilot.press("x")
        await pilot.press("h")
        await pilot.pause(0.2)
        md = next(lab.glob("model-card-*.md")).read_text()
        assert "# Model card" in md and "| choice | acc | 0.41" in md
        assert next(lab.glob("model-card-*.html")).read_text().lstrip().lower().startswith("<!doctype html")


async def test_report_of_a_classifier_shows_its_confusion_matrix(make, models):
    app = app_with(make, "eval", preset="tiny")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        screen.show_model(str(models["classify"]))
        await wait_for(pilot, lambda: screen.card is not None and screen.card["checkpoint"] == str(models["classify"]))
        await pilot.pause(0.2)
        cm = screen.query_one(ConfusionMatrix)
        assert cm.display and cm.matrix == [[42, 8], [12, 38]]
        bars = screen.query_one(ScoreBars)
        assert [(s.value, s.reference) for s in bars.scores] == [(0.8, 0.5)]
        preset = screen.eval_preset()
        assert preset.eval.tasks == ["classify"] and preset.eval.model == str(models["classify"])
        assert preset.finetune.data == "embedded:tinyworld-classify"


def test_classify_bars_carry_the_interval_and_the_bag_of_words_reference():
    card = {"evaluations": [{"run": "20260101-000000-tiny-eval", "tasks": {"classify": {
        "accuracy": 0.9, "ci_low": 0.85, "ci_high": 0.94, "majority_baseline": 0.5,
        "baseline_bow": {"accuracy": 0.62}}}}]}
    (bar,) = scores_of(card)
    assert (bar.value, bar.low, bar.high, bar.reference, bar.reference_label) == (0.9, 0.85, 0.94, 0.62, "bag of words")
