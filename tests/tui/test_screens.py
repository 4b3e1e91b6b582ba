"""Each part-1 stage screen through App.run_test: what it shows and the messages it posts, on real
files, real core calls and real run processes (the real pretraining stage on a very small preset)."""

from __future__ import annotations

from conftest import settle, wait_for
from screen_text import screen_text
from textual.widgets import DataTable, Static

from core import runs as core_runs
from core.model import stats
from tui.messages import MetricsArrived, RunAttached, RunEnded, RunStarted
from tui.screens.dialogs import ConfirmScreen
from tui.widgets.loss_chart import LossChart
from tui.widgets.preset_form import PresetForm
from tui.widgets.token_view import TokenView


async def test_pretrain_start_streams_points_into_the_chart_and_ends(make, lab):
    seen = []
    app = make(mode="pretrain")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: any(isinstance(m, RunEnded) for m in seen), 90)
        await pilot.pause(0.3)
        screen = app.screen
        chart = screen.query_one(LossChart)
        run = core_runs.open_run(screen.run_name, lab / "runs")
        train = [e for e in run.events() if e["kind"] == "train"]
        val = [e for e in run.events() if e["kind"] == "val"]
        assert chart.train.steps == [e["step"] for e in train] and chart.train.steps[-1] == 30
        assert chart.train.values == [e["loss"] for e in train]
        assert chart.val.steps == sorted({e["step"] for e in val}) and 30 in chart.val.steps
        seen = list({id(m): m for m in seen}.values())  # a bubbling message reaches the hook at each level
        started = [m for m in seen if isinstance(m, RunStarted)]
        assert len(started) == 1 and started[0].stage == "pretrain"
        assert any(isinstance(m, RunAttached) and m.run_name == started[0].run_name for m in seen)
        arrived = [m for m in seen if isinstance(m, MetricsArrived)]
        assert arrived and sum(m.count for m in arrived) >= len(train) + len(val)  # coalesced, nothing lost
        ended = next(m for m in seen if isinstance(m, RunEnded))
        assert ended.state == "finished"
        text = screen_text(app)
        assert "finished" in text and "step       30" in text and "upon a time" in text
        # view toggles
        await pilot.press("l", "t", "m")
        assert chart.log_y and chart.x_axis == "tokens" and chart.smoothing == 0.9


async def test_pretrain_stop_asks_the_run_to_stop(make, lab):
    (lab / "long.toml").write_text('extends = "small.toml"\nname = "long"\n[train]\nmax_steps = 2000\n')
    seen = []
    app = make(preset="long.toml", mode="pretrain")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: len(app.screen.query_one(LossChart).train) > 3, 90)
        await pilot.press("x")
        await wait_for(pilot, lambda: any(isinstance(m, RunEnded) for m in seen), 60)
        ended = next(m for m in seen if isinstance(m, RunEnded))
        assert ended.state == "stopped"
        assert app.screen.query_one(LossChart).train.steps[-1] < 2000


async def test_a_new_workbench_attaches_to_a_live_run(make, lab):
    from core import config

    (lab / "long.toml").write_text('extends = "small.toml"\nname = "long"\n[train]\nmax_steps = 150\n')
    handle = core_runs.launch("pretrain", config.load(lab / "long.toml"), root=lab / "runs")
    await_state = 0
    while handle.run.state == "created" and await_state < 100:
        import time
        time.sleep(0.05)
        await_state += 1
    seen = []
    app = make(mode="pretrain")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await wait_for(pilot, lambda: any(isinstance(m, RunAttached) for m in seen), 10)
        assert app.screen.run_name == handle.run.name
        await wait_for(pilot, lambda: any(isinstance(m, RunEnded) for m in seen), 120)
        train_steps = [e["step"] for e in handle.run.events() if e["kind"] == "train"]
        assert app.screen.query_one(LossChart).train.steps == train_steps and train_steps[-1] == 150
    handle.wait(10)


async def test_runs_lists_opens_stops_and_deletes_after_confirming(make, lab):
    from core import config

    h = core_runs.launch("pretrain", config.load(lab / "small.toml"), root=lab / "runs")
    h.wait(120)
    app = make(mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DataTable)
        assert table.row_count == 1
        assert "finished" in screen_text(app) and h.run.name in screen_text(app)
        await pilot.press("o")
        await wait_for(pilot, lambda: "status finished" in screen_text(app), 10)
        assert "train step     30 loss" in screen_text(app)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert h.run.path.exists()
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen.query_one("#runs-table", DataTable).row_count == 0, 10)
        assert not h.run.path.exists()


async def test_data_browses_the_corpus_and_a_labelled_set(make):
    app = make(mode="data")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded is not None, 30)
        screen = app.screen
        assert screen.loaded.kind == "corpus" and len(screen.loaded.rows) > 100
        table = screen.query_one("#data-table", DataTable)
        assert table.row_count == 100  # one page
        first = screen.loaded.rows[0]["text"]
        assert first[:30] in str(screen.query_one("#data-text", Static).render())
        await pilot.press("right_square_bracket")
        assert "page 2/" in screen_text(app)
        screen.query_one("#data-search").value = "Sam"
        await pilot.pause()
        assert all("sam" in r["text"].lower() for r in screen.shown_rows)
        screen.load("embedded:tinyworld-classify")
        await wait_for(pilot, lambda: screen.loaded.kind == "records", 30)
        classes = screen.loaded.stats["classes"]
        assert len(classes) >= 2 and sum(c["count"] for c in classes) == len(screen.loaded.rows)
        assert "class" in str(screen.query_one("#data-stats", Static).render())


async def test_tokenizer_spans_selection_and_chat_mask(make):
    app = make(preset="gpt2tok.toml", mode="tokenizer")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.query_one("#tok-view", TokenView).spans, 30)
        view = app.screen.query_one("#tok-view", TokenView)
        assert [s.id for s in view.spans][:3] == [7454, 2402, 257]  # "Once", " upon", " a" in GPT-2
        view.focus()
        await pilot.press("right", "right")
        await pilot.pause()
        detail = str(app.screen.query_one("#tok-detail", Static).render())
        assert "id 257" in detail or "id 2402" in detail
        assert "merge of" in detail
        chat = app.screen.query_one("#chat-view", TokenView)
        assert chat.loss_mask is not None and 0 < sum(chat.loss_mask) < len(chat.loss_mask)
        await settle(pilot)


async def test_model_numbers_follow_the_fields(make):
    app = make(mode="model")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        form = app.screen.query_one(PresetForm)
        form.set_value("model.n_layer", 3)
        await pilot.pause(0.3)
        assert app.preset.model.n_layer == 3 and app.preset_source == "<edited>"
        import dataclasses
        expected = stats.param_counts(dataclasses.replace(app.preset.model, vocab_size=300)).total
        assert f"{expected / 1e3:.2f}k" in screen_text(app)
        form.set_value("model.n_head", 5)
        await pilot.pause(0.3)
        assert form.problems["model.n_embd"] == "32 is not divisible by model.n_head = 5"
        assert app.preset.model.n_head == 2  # an invalid edit never becomes the preset
        await pilot.press("T")
        assert app.screen.query_one("#model-tree").display
