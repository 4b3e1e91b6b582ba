"""The Eval screen's comparison: c picks a second model (its base by default), a real compare
evaluation runs, and the paired verdict per task shows in the Comparison section, within 80x24."""

from __future__ import annotations

from conftest import wait_for
from model_screens_helpers import EVAL, app_with, make_run, models  # noqa: F401
from screen_text import screen_text

from tui.screens.eval_report import EvalScreen, comparisons_renderable
from tui.widgets.model_picker import ModelPicker


def compare_report(a, b) -> dict:
    row = {"metric": "exact match", "n": 200, "resamples": 10000}
    return {"stage": "eval", "model": {"checkpoint": str(b)}, "tasks": {"compare": {
        "models": {"A": {"checkpoint": str(a)}, "B": {"checkpoint": str(b)}},
        "tasks": {"instruct": {**row, "mean_a": 0.0, "mean_b": 0.695, "difference": 0.695, "ci_low": 0.63,
                               "ci_high": 0.755, "p_value": 0.0001, "verdict": "B is better"},
                  "choice": {**row, "mean_a": 0.544, "mean_b": 0.54, "difference": -0.004, "ci_low": -0.06,
                             "ci_high": 0.05, "p_value": 0.9, "verdict": "no difference: the interval includes 0"}}}}}


async def test_the_comparison_shows_each_tasks_verdict_at_80x24(make, models, lab):
    make_run(models["root"], EVAL.replace("03", "05", 1), "eval", "small",
             report=compare_report(models["pretrain"], models["instruct"]))
    app = app_with(make, "eval", preset="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, EvalScreen)
        screen.show_model(str(models["instruct"]))
        await wait_for(pilot, lambda: screen.card is not None and "sft" in screen.card["checkpoint"])
        await pilot.pause(0.3)
        box = screen.query_one("#ev-compare")
        assert box.display
        text = screen_text(app)
        assert "Comparison" in text and "B is better  0.000 \u2192 0.695" in text and "no difference  0.544" in text
        assert "+0.695 [+0.630,+0.755] p 0.0001" in text  # the interval, not only the numbers of each model
        assert "-0.004 [-0.060,+0.050] p 0.9" in text and box.region.right <= 80


async def test_c_compares_with_the_base_in_a_real_run_and_shows_the_verdict(make, models, lab):
    (lab / "cmp.toml").write_text('extends = "tiny"\nname = "cmp"\n[eval]\nlimit = 2\n')
    app = app_with(make, "eval", preset="cmp.toml")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.show_model(str(models["instruct"]))
        await wait_for(pilot, lambda: screen.card is not None and "sft" in screen.card["checkpoint"])
        assert not screen.query_one("#ev-compare").display  # no comparison yet
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
        assert app.screen.current == str(models["pretrain"])  # the picker starts on the base
        app.screen.query_one("#picker-spec").value = str(models["pretrain"])
        app.screen.query_one("#picker-spec").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.card is not None and comparisons_renderable(screen.card) is not None,
                       timeout=120, msg="the compare run ended and the card reloaded")
        await pilot.pause(0.3)
        ev = [e for e in screen.card["evaluations"] if "compare" in e["tasks"]][0]
        r = ev["tasks"]["compare"]
        assert set(r["tasks"]) == {"choice", "instruct"} and r["tasks"]["instruct"]["n"] == 2
        assert r["models"]["A"]["checkpoint"] == str(models["pretrain"])
        assert r["tasks"]["instruct"]["verdict"].split(":")[0] in screen_text(app)
