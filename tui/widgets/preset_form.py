"""PresetForm: the fields of a preset (or of some of its sections) as a form, checked as typed.

Every leaf field of `core.config`'s schema gets a row: its key, an input (a select for fields with
choices, a switch for booleans), its one-line doc, and a problem line that shows what
`core.config.from_dict` reports for that key. The form validates through core once typing rests
(CHECK_AFTER_S: a character shows at once, a burst costs one validation) and on every choice, and
posts `PresetForm.Changed` with the new preset, or None and the problems.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from core import config
from tui.text import plain
from tui.widgets.field_input import FieldInput

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class FieldSpec:
    key: str  # dotted
    type: typing.Any
    doc: str
    choices: tuple | None


def field_specs(sections: typing.Sequence[str] | None = None) -> list[FieldSpec]:
    """Leaf fields of the preset schema, in declaration order (arrays of tables are left to TOML)."""
    out: list[FieldSpec] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = prefix + f.name
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
            elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                continue
            else:
                out.append(FieldSpec(key, tp, f.metadata.get("doc", ""), f.metadata.get("choices")))

    walk(config.Preset, "")
    if sections is not None:
        out = [s for s in out if (s.key.split(".")[0] if "." in s.key else "preset") in sections]
    return out


def get_value(preset: config.Preset, key: str) -> typing.Any:
    obj: typing.Any = preset
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def to_text(value: typing.Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e16 else repr(value)
    if isinstance(value, list):
        import tomli_w
        return tomli_w.dumps({"v": value}).strip()[4:]
    return str(value)


def parse_text(spec: FieldSpec, text: str) -> typing.Any:
    """Text of an input -> a TOML value; strings stay as typed, anything unparsable is passed on as
    text so that core's validation names what is wrong with it."""
    if spec.type is str:
        return text
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text


CHECK_AFTER_S = 0.08  # typing that rests this long is validated (one check per burst of keys)


def _dom_id(key: str) -> str:
    return "f-" + key.replace(".", "--")


class PresetForm(VerticalScroll):
    """Rows of fields; `.preset` is the last valid preset, `.problems` the current problems by key."""

    DEFAULT_CSS = """
    PresetForm { height: 1fr; }
    PresetForm .section { text-style: bold; color: $text-accent; margin-top: 1; }
    PresetForm .row-box { height: auto; }
    PresetForm .row { height: 1; }
    PresetForm .key { width: 26; padding: 0 1 0 0; }
    PresetForm .row Input, PresetForm .row Select { width: 1fr; }
    PresetForm .row Switch { width: 8; height: 1; border: none; padding: 0; }
    PresetForm .doc { color: $text-muted; padding-left: 26; height: auto; width: 100%; }
    PresetForm .problem { color: $text-error; padding-left: 26; height: auto; width: 100%; display: none; }
    PresetForm .problem.-shown { display: block; }
    PresetForm #form-problems { color: $text-error; height: auto; width: 100%; display: none; }
    """

    @dataclass
    class Changed(Message):
        form: PresetForm
        preset: config.Preset | None
        problems: dict[str, str]

        @property
        def control(self) -> PresetForm:
            return self.form

    def __init__(self, preset: config.Preset, sections: typing.Sequence[str] | None = None, *,
                 show_docs: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.base = preset
        self.preset: config.Preset | None = preset
        self.specs = field_specs(sections)
        self.show_docs = show_docs
        self.problems: dict[str, str] = {}
        self._shown: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="form-problems")
        section = None
        for spec in self.specs:
            top = spec.key.rsplit(".", 1)[0] if "." in spec.key else "preset"
            if top != section:
                section = top
                yield Label(f"[{section}]", classes="section", markup=False)
            value = get_value(self.base, spec.key)
            with Vertical(classes="row-box"):
                with Horizontal(classes="row"):
                    yield Label(spec.key.rsplit(".", 1)[-1], classes="key")
                    if spec.choices:
                        yield Select([(plain(c), c) for c in spec.choices], value=value, allow_blank=False,
                                     id=_dom_id(spec.key), compact=True)
                    elif spec.type is bool:  # a select: a compact Switch does not draw in one line
                        yield Select([("true", True), ("false", False)], value=bool(value), allow_blank=False,
                                     id=_dom_id(spec.key), compact=True)
                    else:
                        yield FieldInput(to_text(value), id=_dom_id(spec.key), compact=True)
                if self.show_docs:
                    yield Label(spec.doc, classes="doc", markup=False)
                yield Label("", classes="problem", id=_dom_id(spec.key) + "-problem", markup=False)

    def focus_first(self) -> None:
        """Focus the first field of the form (the form itself takes no typing)."""
        first = next((w for w in self.query("Input, Select") if w.focusable), None)
        if first is not None:
            first.focus()

    def show(self, preset: config.Preset) -> None:
        """Show `preset`'s values in the fields already there (changed elsewhere: the picker, the
        editor). Rebuilding the form instead raced its own removal (two forms with one id) and lost
        the focus; a pending check of older typing is dropped."""
        if getattr(self, "check_timer", None) is not None:
            self.check_timer.stop()
            self.check_timer = None
        self.base = self.preset = preset
        with self.prevent(Input.Changed, Select.Changed):
            for spec in self.specs:
                w = self.query_one("#" + _dom_id(spec.key))
                value = get_value(preset, spec.key)
                if isinstance(w, Input):
                    w.value = to_text(value)
                elif isinstance(w, Select):
                    w.value = bool(value) if spec.type is bool else value
        self.check()

    # ------------------------------------------------------------------------- values
    def values(self) -> dict[str, typing.Any]:
        out = {}
        for spec in self.specs:
            w = self.query_one("#" + _dom_id(spec.key))
            if isinstance(w, Input):
                out[spec.key] = parse_text(spec, w.value)
            elif isinstance(w, Switch):
                out[spec.key] = w.value
            elif isinstance(w, Select):
                out[spec.key] = w.value
        return out

    def set_value(self, key: str, value: typing.Any) -> None:
        """Set one field as if typed (tests and the command palette use this)."""
        w = self.query_one("#" + _dom_id(key))
        if isinstance(w, Input):
            w.value = to_text(value) if not isinstance(value, str) else value
            self._changed()  # at once, as a paste would be: no typing to wait for
        else:
            w.value = value

    def check(self) -> config.Preset | None:
        """Validate the form through core.config; show each problem beside its field."""
        doc = config.apply_overrides(config.to_dict(self.base), self.values())
        problems: dict[str, str] = {}
        preset = None
        try:
            preset = config.from_dict(doc, "form", default_name=self.base.name)
        except config.PresetError as e:
            for p in e.problems:
                problems.setdefault(p.key, p.message)
        self.problems = problems
        own = {s.key for s in self.specs}
        for key in set(problems) | set(self._shown):
            if key not in own or problems.get(key) == self._shown.get(key):
                continue
            label = self.query_one(f"#{_dom_id(key)}-problem", Label)
            msg = problems.get(key, "")
            label.update(f"\u2717 {msg}" if msg else "")
            label.set_class(bool(msg), "-shown")
        self._shown = {k: v for k, v in problems.items() if k in own}
        other = [f"{k}: {m}" for k, m in problems.items() if k not in own]
        box = self.query_one("#form-problems", Static)
        box.update("\n".join(other))
        box.display = bool(other)
        if preset is not None:
            self.preset = preset
        return preset

    def _changed(self) -> None:
        preset = self.check()
        self.post_message(self.Changed(self, preset, dict(self.problems)))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if getattr(self, "check_timer", None) is not None:
            self.check_timer.stop()
        self.check_timer = self.set_timer(CHECK_AFTER_S, self._typing_rested)

    def _typing_rested(self) -> None:
        self.check_timer = None
        self._changed()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._changed()
