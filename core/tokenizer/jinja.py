"""Chat templates of real models: the model's Jinja template rendered as transformers' apply_chat_template does.

The template (tokenizer_config.json `chat_template`, chat_template.jinja, or GGUF metadata) runs in
jinja2's ImmutableSandboxedEnvironment with transformers' settings (trim_blocks, lstrip_blocks,
loopcontrols, `raise_exception`, `strftime_now`, a non-escaping `tojson`) and the special tokens as
variables, so the string and ids are identical to transformers'. Its output and work are bounded
(a loop or a runaway string is a UserError naming the file), reading an undefined variable is an
error rather than silently empty (`is defined` and `{% if x %}` still work).

The loss mask is computed by rendering, not by knowing the format: each assistant content is
rendered once as a unique marker, the marker positions give its characters in the real string
(checked: substituting the contents back must give the real render), the tokens inside carry
loss, and so does the special token the template writes right after it (its end of turn).
Message contents are tokenized as text: a special token spelled inside a message stays text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from core.errors import UserError

if TYPE_CHECKING:
    from core.tokenizer.protocol import TemplateTokenizer

MAX_OUTPUT_CHARS = 4_000_000   # a template that writes more than this is looping
MAX_RENDER_S = 10.0            # ... or that works longer than this
MAX_RANGE = 100_000


class TemplateBudget(Exception):
    """The template ran past its output or time budget."""


def _environment(deadline: list[float]) -> Any:
    """An ImmutableSandboxedEnvironment configured as transformers' _compile_jinja_template."""
    import json

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Undefined(jinja2.StrictUndefined):
        """Undefined that is falsy (`{% if tools %}` works) but fails when printed, iterated or read."""

        def __bool__(self) -> bool:  # type: ignore[override]
            return False

    class Env(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            out = super().call_binop(context, operator, left, right)
            if isinstance(out, (str, list)) and len(out) > MAX_OUTPUT_CHARS:
                raise TemplateBudget(f"a value of {len(out):,} items")
            _tick(deadline)
            return out

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def bounded_range(*args: int) -> Any:
        r = range(*args)
        if len(r) > MAX_RANGE:
            raise TemplateBudget(f"range of {len(r):,} numbers")
        for i in r:
            _tick(deadline)
            yield i

    env = Env(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols], undefined=Undefined)
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt),
                       range=bounded_range)
    return env


def _tick(deadline: list[float]) -> None:
    if time.monotonic() > deadline[0]:
        raise TemplateBudget(f"more than {MAX_RENDER_S:g} s")


class JinjaChatTemplate:
    """A model's own chat template over its HFTokenizer: render -> (ids, loss mask), text, stop ids."""

    name = "jinja"

    def __init__(self, source: str, tokenizer: TemplateTokenizer, where: str):
        import jinja2

        self.source, self.tok, self.where = source, tokenizer, where
        self._deadline = [0.0]
        try:
            self._template = _environment(self._deadline).from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"{where}: chat_template line {e.lineno}: {e.message}") from None

    # ------------------------------------------------------------------------------ render
    def _render(self, messages: Sequence[dict], add_generation_prompt: bool) -> str:
        import jinja2

        variables = {**self.tok.template_variables(), "messages": [dict(m) for m in messages], "tools": None,
                     "documents": None, "add_generation_prompt": add_generation_prompt}
        self._deadline[0] = time.monotonic() + MAX_RENDER_S
        parts, size = [], 0
        try:
            for chunk in self._template.generate(**variables):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateBudget(f"more than {MAX_OUTPUT_CHARS:,} characters")
                parts.append(chunk)
        except TemplateBudget as e:
            raise UserError(f"{self.where}: the chat template ran past its budget ({e}); it loops") from None
        except jinja2.UndefinedError as e:
            raise UserError(f"{self.where}: the chat template reads an undefined variable ({e.message})") from None
        except jinja2.TemplateError as e:  # raise_exception(...) and runtime errors of the template
            raise UserError(f"{self.where}: the chat template refused the conversation: {e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError, ZeroDivisionError) as e:
            raise UserError(f"{self.where}: the chat template failed ({type(e).__name__}: {e})") from None
        return "".join(parts)

    def render_text(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        """The conversation as the template writes it: transformers' apply_chat_template(tokenize=False)."""
        _check(messages)
        return self._render(messages, add_generation_prompt)

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """Ids of the conversation and a 0/1 mask that is 1 exactly on the assistant contents and
        the end-of-turn token after each (what a finetuned model must produce)."""
        _check(messages)
        text, spans = self._content_spans(messages, add_generation_prompt)
        ids, offsets = self._tokenize(text, spans)
        return ids, self._mask(text, ids, offsets, [s for s, is_assistant in spans if is_assistant])

    def _content_spans(self, messages: Sequence[dict], add_generation_prompt: bool
                       ) -> tuple[str, list[tuple[tuple[int, int], bool]]]:
        """The real render and the (start, end) characters of every message content in it: the
        contents rendered as markers, then put back as they are (or trimmed, for templates that
        `| trim`); the result must be the real render, else the contents are searched for."""
        real = self._render(messages, add_generation_prompt)
        tag = uuid.uuid4().hex[:12]
        marks = [f"\x00{tag}{i}\x00" for i in range(len(messages))]
        marked = self._render([{**m, "content": marks[i]} for i, m in enumerate(messages)], add_generation_prompt)
        if any(marked.count(mk) != 1 for mk in marks):
            return real, self._fallback_spans(real, messages)
        for put_back in (lambda c: c, str.strip):
            spans, pieces, pos, shift = [], [], 0, 0
            for i, m in enumerate(messages):
                at = marked.index(marks[i])
                content = put_back(m["content"])
                pieces += [marked[pos:at], content]
                spans.append(((at + shift, at + shift + len(content)), m["role"] == "assistant"))
                shift += len(content) - len(marks[i])
                pos = at + len(marks[i])
            if "".join(pieces) + marked[pos:] == real:
                return real, spans
        return real, self._fallback_spans(real, messages)

    def _fallback_spans(self, real: str, messages: Sequence[dict]) -> list[tuple[tuple[int, int], bool]]:
        """Contents located in order in the real render (as the template wrote them, whitespace-trimmed)."""
        spans, pos = [], 0
        for m in messages:
            content = m["content"].strip()
            if not content:  # blank (or trimmed away): no tokens of it to train or to find
                continue
            at = real.find(content, pos)
            if at < 0:
                if m["role"] == "assistant":
                    raise UserError(f"{self.where}: the chat template does not write an assistant message as it "
                                    "is, so llmlab cannot tell which tokens carry the loss")
                continue
            spans.append(((at, at + len(content)), m["role"] == "assistant"))
            pos = at + len(content)
        return spans

    def _tokenize(self, text: str, spans: list[tuple[tuple[int, int], bool]]) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of the whole render as transformers tokenizes it. A special token spelled inside a
        message is encoded as text instead, with the rest encoded around it as transformers'
        `sanitize_control_tokens=True` does (each later piece after a newline that is then dropped,
        so SentencePiece adds no prefix space mid-text)."""
        ids, offsets = self.tok.encode_with_char_offsets(text, "all")
        inside = [a for a, _ in spans]
        marked = [(s, e) for t, (s, e) in zip(ids, offsets)
                  if self.tok.is_special(t) and any(a <= s < b for a, b in inside)]
        if not marked:
            return ids, offsets
        ids, offsets = [], []
        cuts = [(0, marked[0][0], False)]
        for k, (s, e) in enumerate(marked):
            cuts.append((s, e, True))
            cuts.append((e, marked[k + 1][0] if k + 1 < len(marked) else len(text), False))
        for n, (start, end, as_text) in enumerate(cuts):
            if start < end:
                piece_ids, piece_off = self._piece(text[start:end], as_text, first=n == 0)
                ids += piece_ids
                offsets += [(s + start, e + start) for s, e in piece_off]
        return ids, offsets

    def _piece(self, piece: str, as_text: bool, first: bool) -> tuple[list[int], list[tuple[int, int]]]:
        allowed = () if as_text else "all"
        if first:
            return self.tok.encode_with_char_offsets(piece, allowed)
        newline = self.tok.encode("\n", allowed_special="all")
        ids, offsets = self.tok.encode_with_char_offsets("\n" + piece, allowed)
        if ids[:len(newline)] == newline:
            return ids[len(newline):], [(s - 1, t - 1) for s, t in offsets[len(newline):]]
        return self.tok.encode_with_char_offsets(piece, allowed)

    def _mask(self, text: str, ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
        mask = [0] * len(ids)
        k = 0
        for a, b in spans:
            while k < len(ids) and offsets[k][0] < a:
                k += 1
            while k < len(ids) and offsets[k][0] < b:
                mask[k] = 1
                k += 1
            # the end of turn: the special token the template writes after the content (past any spaces)
            j = k
            while j < len(ids) and not self.tok.is_special(ids[j]) and not text[offsets[j][0]:offsets[j][1]].strip():
                j += 1
            if j < len(ids) and self.tok.is_special(ids[j]):
                mask[k:j + 1] = [1] * (j + 1 - k)
                k = j + 1
        return mask

    # ------------------------------------------------------------------------- generation
    @cached_property
    def stop_ids(self) -> list[int]:
        """The end-of-turn token the template writes after an assistant message, and EOS."""
        probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        ids, mask = self.render(probe)
        ends = [t for t, m in zip(ids, mask) if m and self.tok.is_special(t)]
        return list(dict.fromkeys([*ends, self.tok.eot_id]))

    def parse(self, ids: Sequence[int]) -> list[dict]:
        raise UserError(f"{self.where}: reading messages back from ids needs ChatML; this model has its own template")


class NoChatTemplate:
    """A tokenizer without a chat template (a base model): chat and chat-format finetuning refuse clearly."""

    name = "none"

    def __init__(self, folder: Any):
        self.folder = folder

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise UserError(f"{self.folder}: the tokenizer has no chat_template (tokenizer_config.json or "
                        "chat_template.jinja), so this model has no chat format; use `generate`, or finetune it "
                        "with finetune.template = \"alpaca\"")

    render = render_text = parse = _refuse

    @property
    def stop_ids(self) -> list[int]:
        return self._refuse()


def _check(messages: Sequence[dict]) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise UserError("a conversation is a non-empty list of {'role', 'content'} messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UserError(f"message {i}: expected {{'role': ..., 'content': text}}, got {m!r:.80}")
