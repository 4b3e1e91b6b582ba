"""Reusable widgets mounted in a tiny host app: LossChart, TokenView, PresetForm, AdvicePanel."""

from __future__ import annotations

from textual.app import App, ComposeResult

from core import config
from core.tokenizer.inspect import Span
from tui.widgets.advice_panel import AdvicePanel
from tui.widgets.loss_chart import LossChart, smooth
from tui.widgets.preset_form import PresetForm
from tui.widgets.token_view import TokenView


class Host(App):
    def __init__(self, *widgets):
        super().__init__()
        self.widgets = widgets
        self.messages = []

    def compose(self) -> ComposeResult:
        yield from self.widgets

    def on_token_view_selected(self, m):
        self.messages.append(m)

    def on_preset_form_changed(self, m):
        self.messages.append(m)


def test_smoothing_is_debiased_ema():
    assert smooth([1.0, 1.0, 1.0], 0.9) == [1.0, 1.0, 1.0]
    assert smooth([2.0, 0.0], 0.5) == [2.0, (0.5 * 1.0 + 0.0) / 0.75]
    assert smooth([3.0, 1.0], 0.0) == [3.0, 1.0]


async def test_loss_chart_takes_train_and_val_points_and_skips_bad_ones():
    chart = LossChart()
    async with Host(chart).run_test(size=(60, 20)) as pilot:
        added = chart.add_events([
            {"kind": "train", "step": 1, "loss": 4.0, "tokens": 100, "t": 10.0},
            {"kind": "train", "step": 2, "loss": float("nan"), "tokens": 200, "t": 11.0},
            {"kind": "log", "message": "hello"},
            {"kind": "val", "step": 2, "val_loss": 3.5, "t": 11.0},
            {"kind": "train", "step": 3, "loss": 3.0, "tokens": 300, "t": 70.0},
        ])
        assert added == 3
        assert chart.train.steps == [1, 3] and chart.val.values == [3.5]
        assert chart.train.xs("time", 10.0) == [0.0, 1.0] and chart.train.xs("tokens", 0) == [100, 300]
        chart.cycle_x_axis()
        assert chart.x_axis == "tokens"
        chart.set_overlay("old", [{"kind": "train", "step": 1, "loss": 5.0}])
        assert len(chart.overlays["old"][0]) == 1
        await pilot.pause(0.6)
        chart.remove_overlays()
        chart.clear_run()
        assert len(chart.train) == 0


async def test_loss_chart_draws_live_evals_on_the_right_and_moves_a_cursor():
    chart = LossChart()
    async with Host(chart).run_test(size=(80, 20)) as pilot:
        added = chart.add_events([{"kind": "train", "step": s, "loss": 5.0 - s / 10, "tokens": 10 * s} for s in (1, 2, 3)]
                                 + [{"kind": "eval", "step": 2, "task": "choice", "acc": 0.4, "n": 8, "seconds": 0.1},
                                    {"kind": "eval", "step": 3, "task": "classify", "accuracy": 0.7, "n": 8},
                                    {"kind": "eval", "step": 3, "task": "choice", "acc": float("nan")}])
        assert added == 5 and chart.evals["choice acc"].values == [0.4] and chart.evals["classify accuracy"].steps == [3]
        assert chart.evals["choice acc"].tokens == [30]  # an eval event has no tokens: the run's count so far
        chart.focus()
        assert chart.cursor_step is None
        await pilot.press("left")  # the first key places the cursor on the newest point
        assert chart.cursor_step == 3
        await pilot.press("left", "left", "left")
        assert chart.cursor_step == 1
        await pilot.press("end")
        assert chart.cursor_step == 3
        await pilot.pause(1.2)
        text = str(chart.render())
        assert "choice acc (right)" in text and "step 3: loss 4.700" in text
        chart.clear_run()
        assert chart.cursor_step is None and not chart.evals


async def test_token_view_moves_and_posts_selected():
    spans = [Span(1, b"a", "a", 0, 1, False), Span(2, b"b", "b", 1, 2, False), Span(3, b"<s>", "<s>", 2, 2, False, True)]
    view = TokenView(spans, loss_mask=[0, 1, 1])
    host = Host(view)
    async with host.run_test(size=(40, 8)) as pilot:
        view.focus()
        await pilot.press("right", "right", "right", "left")
        await pilot.pause()
        assert view.cursor == 1 and [m.token_id for m in host.messages] == [1, 2, 3, 2]
        await pilot.press("end")
        assert view.cursor == 2
        await pilot.press("i")
        assert view.show_ids and "a1" in str(view.render()).replace(" ", "")


async def test_preset_form_checks_through_core_and_posts_changed():
    preset = config.load("tiny")
    form = PresetForm(preset, ["train"])
    host = Host(form)
    async with host.run_test(size=(100, 40)) as pilot:
        form.set_value("train.min_lr", "0.5")
        await pilot.pause()
        last = host.messages[-1]
        assert last.preset is None and last.problems == {"train.min_lr": f"0.5 is above train.lr = {preset.train.lr:g}"}
        form.set_value("train.min_lr", "1e-4")
        await pilot.pause()
        assert host.messages[-1].preset.train.min_lr == 1e-4 and host.messages[-1].problems == {}


async def test_advice_panel_lists_the_stage_findings():
    panel = AdvicePanel("pretrain")
    async with Host(panel).run_test(size=(100, 20)):
        found = panel.update_for(config.load("tiny"))
        assert [f.title for f in found][:2] == ["Tokens per parameter", "Repeated data"]
        assert "Tokens per parameter" in str(panel.render())


async def test_advice_panel_fetches_the_corpus_facts_and_says_where_they_come_from(workspace, tmp_path, gpt2_cache):
    """The Model, Tokenizer and Pretrain screens' panels: the rules judge the scanned corpus (its
    real token count, not an estimate from bytes) and a dim line says what is known and from where."""
    import random

    from tests.data.corpus_kit import fortunes_file

    fortunes_file(tmp_path / "f.txt", random.Random(4), 200)
    preset = config.load("tiny", {"data.source": str(tmp_path / "f.txt"), "data.separator": "^%$",
                                  "tokenizer.kind": "tiktoken"})
    panel = AdvicePanel("pretrain")
    async with Host(panel).run_test(size=(120, 30)) as pilot:
        panel.styles.max_height = 20  # room for every finding whole: a smaller panel drops the line first
        panel.update_with_corpus_facts(preset)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        text = str(panel.render())
        assert text.startswith("corpus: ") and "training tokens" in text and "a scan of the local sources" in text
        epochs = next(f for f in panel.findings if f.title == "Repeated data")
        assert epochs.numbers["estimated"] is False  # counted by the tokenizer, not guessed from bytes


async def test_rollout_view_shows_the_newest_group_first_and_pauses():
    from tui.widgets.rollout_view import RolloutView

    view = RolloutView()

    def group(step):
        return {"kind": "rollout", "step": step, "prompt": f"question {step}", "answer": "3",
                "completions": [{"text": "3", "reward": 1.1, "advantage": 0.87}, {"text": "Tom", "reward": 0.1, "advantage": -0.87}]}
    async with Host(view).run_test(size=(70, 30)) as pilot:
        assert view.add_events([group(1), {"kind": "train", "step": 1}, group(2)]) == 2
        await pilot.pause()
        text = str(view.render())
        assert text.index("step 2") < text.index("step 1") and "r 1.10 A +0.87" in text and "A -0.87" in text
        assert view.toggle_pause() is True
        view.add_events([group(3)])
        assert "step 3" not in str(view.render()) and len(view.events) == 3
        view.toggle_pause()
        assert "step 3" in str(view.render())
