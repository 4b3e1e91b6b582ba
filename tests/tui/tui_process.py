"""A workbench in a process of its own (headless), for the end-to-end test that kills it mid-run.

Usage: python tui_process.py PRESET_TOML RUNS_ROOT. Opens Pretrain, presses s, prints the run name
once the first training points have arrived, then keeps following until it is killed."""

import asyncio
import sys
from pathlib import Path


async def main(preset: str, runs_root: str) -> None:
    from tui.app import make_app
    from tui.widgets.loss_chart import LossChart

    app = make_app(preset=preset, runs_root=Path(runs_root), mode="pretrain", poll_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        while not len(app.screen.query_one(LossChart).train):
            await pilot.pause(0.1)
        print(app.screen.run_name, len(app.screen.query_one(LossChart).train), flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
