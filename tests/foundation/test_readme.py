"""The README is the user's door: its preset reference matches the schema, its test command is the one CI runs."""

from pathlib import Path

from core.docs import END, START, render_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_preset_reference_matches_the_schema():
    text = README.read_text()
    assert START in text and END in text
    generated = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert generated == render_reference().strip(), "run `python -m core.docs` to regenerate the reference"


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [ln for ln in quick.splitlines() if ln.startswith("python3 -m venv")]
    assert len(commands) == 2
    after_marker = quick.split("<!-- test-command -->", 1)[1].strip().splitlines()
    assert after_marker[1] == commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "torch==2.13.0" in ci


def test_file_structure_lists_every_module_with_its_docstring():
    from core.docs import TREE_END, TREE_START, render_tree
    text = README.read_text()
    generated = text.split(TREE_START, 1)[1].split(TREE_END, 1)[0].strip()
    assert generated == render_tree().strip(), "run `python -m core.docs` to regenerate the file structure"
    for p in (README.parent / "core").rglob("*.py"):
        assert p.relative_to(README.parent).as_posix() in generated


def test_every_test_folder_is_described():
    from core.docs import TEST_DIRS
    folders = {p.name for p in (README.parent / "tests").iterdir() if p.is_dir() and p.name not in ("bench", "__pycache__")}
    assert folders <= set(TEST_DIRS), f"describe in core/docs.py TEST_DIRS: {sorted(folders - set(TEST_DIRS))}"
