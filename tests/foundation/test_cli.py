"""The `llmlab` command as a user runs it: a real subprocess, its output and its exit code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli, lookup, runs

ROOT = Path(cli.__file__).resolve().parent.parent


def llmlab(*args, cwd=None, env=None, timeout=120):
    e = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True,
                       cwd=cwd or ROOT, env=e, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("verb", [v.name for v in cli.VERBS if not v.hidden])
def test_every_verb_has_help(verb):
    code, out, err = llmlab(verb, "--help")
    assert code == 0, err
    assert "usage: llmlab " + verb in out


def test_every_verb_is_wired_to_a_handler():
    parser = cli.build_parser()
    for v in cli.VERBS:
        assert callable(v.handler)
    names = {v.name for v in cli.VERBS}
    assert {"data", "tokenizer", "pretrain", "finetune", "eval", "runs", "presets", "generate", "chat",
            "import-hf", "export-hf", "report", "tui"} <= names
    assert parser.parse_args(["runs", "list"]).handler is cli.cmd_runs


def test_presets_list_show_check(tmp_path):
    code, out, _ = llmlab("presets", "list")
    assert code == 0 and "tiny" in out
    code, out, _ = llmlab("presets", "show", "tiny", "--set", "train.lr=0.01")
    assert code == 0 and "lr = 0.01" in out and 'name = "tiny"' in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nn_head = 3\n[train]\nlr = 0\n')
    code, out, err = llmlab("presets", "check", str(bad))
    assert code == 2
    assert f"{bad}: train.lr: must be > 0, got 0" in err
    assert f"{bad}: model.n_embd: 128 is not divisible by model.n_head = 3" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["pretrain", "missing.toml"], "missing.toml: file not found"),
    (["pretrain", "/tmp"], "/tmp: is a directory, not a preset file"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["runs", "show", "no-such-run"], "no-such-run: no such run"),
    (["presets", "check"], "needs a preset name or file"),
    (["pretrain", "tiny", "--set", "train.lr"], "expected KEY=VALUE"),
    (["pretrain", "tiny", "--set", "model.n_layers=2"], "did you mean 'model.n_layer'"),
])
def test_bad_input_exits_2_with_a_message(workspace, args, message):
    code, out, err = llmlab(*args, cwd=workspace)
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err + out


def test_bad_files_exit_2(workspace):
    (workspace / "empty.toml").write_text("")
    (workspace / "latin.toml").write_bytes(b'name = "caf\xe9"\n')
    (workspace / "broken.toml").write_text("[model\n")
    for f, msg in [("empty.toml", "file is empty"), ("latin.toml", "not UTF-8"), ("broken.toml", "invalid TOML")]:
        code, _out, err = llmlab("presets", "check", f, cwd=workspace)
        assert code == 2 and msg in err and "Traceback" not in err


def test_runs_list_show_stop(workspace):
    from test_runs import small_preset
    h = runs.launch("pretrain", small_preset(5))
    h.wait(60)
    env = {"LLMLAB_HOME": str(workspace)}
    code, out, _ = llmlab("runs", "list", env=env)
    assert code == 0 and "finished" in out and "small" in out
    code, out, _ = llmlab("runs", "show", h.run.name, env=env)
    assert code == 0 and '"state": "finished"' in out
    code, out, _ = llmlab("runs", "stop", h.run.name, env=env)
    assert code == 0 and "not running" in out
    code, out, err = llmlab("runs", "delete", h.run.name, env=env)
    assert code == 2 and "--yes" in err and h.run.path.exists()
    code, out, _ = llmlab("runs", "delete", h.run.name, "--yes", env=env)
    assert code == 0 and not h.run.path.exists()


def test_runs_list_shows_long_names_whole_at_80_columns(workspace):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reliability"))
    from savedkit import make_run

    long = "20260101-000001-a-preset-with-a-long-descriptive-name-finetune"
    make_run(workspace, long, "finished")
    make_run(workspace, "20260101-000002-tiny-pretrain", "stopped")
    code, out, _ = llmlab("runs", "list", env={"LLMLAB_HOME": str(workspace), "COLUMNS": "80"})
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    assert long in "".join(line.split("pretrain")[0].strip() for line in out.splitlines())  # folded, not cut
    assert "…" not in out and "any unique part of a name selects a run" in out


def test_tokenizer_inspect_prints_spans_and_ids(gpt2_cache):
    code, out, err = llmlab("tokenizer", "inspect", "--encoding", "gpt2", "Hello world",
                            env={"TIKTOKEN_CACHE_DIR": str(gpt2_cache)})
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "15496 995"
    code, out, err = llmlab("tokenizer", "inspect", "--encoding", "no-such-encoding", "x")
    assert code == 2 and "unknown encoding 'no-such-encoding'" in err


def test_pretrain_then_eval_a_run_by_name(workspace):
    """`llmlab eval` takes a model as well as a preset: the run's own preset is used."""
    from test_runs import SMALL
    sets = [a for k, v in {**SMALL, "train.max_steps": 6}.items() if k != "name"
            for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, str) else v}")]
    env = {"LLMLAB_HOME": str(workspace)}
    code, out, err = llmlab("pretrain", "tiny", *sets, cwd=workspace, env=env)
    assert code == 0, out + err
    run = runs.list_runs(workspace / "runs")[0]
    code, out, err = llmlab("eval", run.name, "--tasks", "perplexity", cwd=workspace, env=env)
    assert code == 0, out + err
    ev = runs.list_runs(workspace / "runs")[0]
    assert ev.stage == "eval" and ev.state == "finished"
    report = json.loads((ev.path / "report.json").read_text())
    assert str(lookup.resolve_checkpoint(run.path).resolve()) in json.dumps(report)
    assert "perplexity" in json.dumps(report)
    code, out, err = llmlab("eval", "no-such-model-or-preset", cwd=workspace, env=env)
    assert code == 2 and "no-such-model-or-preset" in err


def test_result_events_are_printed():
    assert cli.format_event({"kind": "test", "accuracy": 1.0, "n": 362}) == "[bold]test[/] accuracy 1 | n 362"
    assert cli.format_event({"kind": "eval", "task": "choice", "acc": 0.855}) == "[bold]choice[/] acc 0.855"
    assert cli.format_event({"kind": "val", "step": 3, "val_loss": 1.5, "val_ppl": 4.48}).startswith("[bold]val[/] step 3 | loss 1.5000")
