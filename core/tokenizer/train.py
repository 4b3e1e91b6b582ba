"""Train a byte-level BPE tokenizer on a corpus with `rustbpe`.

rustbpe (the trainer of nanochat) splits text with a regex pattern, counts the pieces in parallel
in Rust and learns merges; its mergeable ranks are exactly what `tiktoken.Encoding` takes, so the
trained tokenizer encodes through tiktoken like the built-ins. We chose it over the `tokenizers`
BPE trainer because its output needs no conversion (tokenizers' byte-level alphabet remaps bytes
to printable characters and orders merges differently) and it trains GPT-4-style patterns natively.

The vocabulary size counts the special tokens: 256 byte tokens + merges + specials = vocab_size.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import rustbpe
import tiktoken

from core.config import GPT4_SPLIT_PATTERN
from core.errors import Stopped, UserError
from core.tokenizer.chat import chat_special_tokens
from core.tokenizer.encodings import ENDOFTEXT, Tokenizer

MAX_VOCAB = 65_536  # ids fit uint16 token shards
_PROGRESS_EVERY_S = 0.5
_STOP_POLL_S = 0.1  # how often a stop is looked for while a child process trains
# rustbpe's thread pool (rayon) does not survive a fork: a child forked after this process trained
# in-process would wait forever for pool threads that are not there. So once it has, it keeps doing so.
_trained_in_process = False


def special_tokens_for(chat_template: str) -> list[str]:
    return [ENDOFTEXT, *chat_special_tokens(chat_template)]


def check_vocab_size(vocab_size: int, chat_template: str = "chatml") -> None:
    n_special = len(special_tokens_for(chat_template))
    if vocab_size < 256 + n_special:
        raise UserError(f"tokenizer.vocab_size: {vocab_size} is too small; a byte-level BPE needs 256 byte "
                        f"tokens + {n_special} special tokens, so use at least {256 + n_special}")
    if vocab_size > MAX_VOCAB:
        raise UserError(f"tokenizer.vocab_size: {vocab_size} is above the limit of {MAX_VOCAB}")


def _limited(texts: Iterable[str], max_bytes: int, counter: list[int], log, stop: threading.Event | None,
             total_bytes: int | None) -> Iterator[str]:
    """Yield documents until `max_bytes` of UTF-8 have passed, reporting progress and honouring stop."""
    last = 0.0
    for text in texts:
        if stop is not None and stop.is_set():
            raise Stopped()
        n = len(text.encode("utf-8"))
        if max_bytes and counter[0] + n > max_bytes:
            # cut the last document at the byte budget (on a character boundary)
            text = text.encode("utf-8")[: max_bytes - counter[0]].decode("utf-8", errors="ignore")
            n = len(text.encode("utf-8"))
        counter[0] += n
        if text:
            yield text
        now = time.monotonic()
        if log is not None and now - last > _PROGRESS_EVERY_S:
            last = now
            log.log({"kind": "progress", "what": "training tokenizer", "done": counter[0],
                     "total": total_bytes or max_bytes or counter[0], "unit": "bytes"})
        if max_bytes and counter[0] >= max_bytes:
            return


def train_ranks(texts: Iterable[str], n_ranks: int, pattern: str = GPT4_SPLIT_PATTERN, *, max_bytes: int = 0,
                log=None, stop: threading.Event | None = None, total_bytes: int | None = None,
                ) -> tuple[dict[bytes, int], rustbpe.Tokenizer | None, int]:
    """Learn `n_ranks - 256` merges: (mergeable ranks, the rustbpe tokenizer, bytes read). With a
    `stop` event the training runs in a child process (see _train_in_child), and no trainer comes back,
    unless this process has trained in-process before (then it trains here; a stop waits for the call).
    The rank table may be shorter than asked when the corpus runs out of pairs to merge."""
    if n_ranks < 256:
        raise UserError(f"tokenizer.vocab_size: {n_ranks} byte and merge tokens is below the 256 byte tokens")
    try:
        tiktoken.Encoding("pattern-check", pat_str=pattern, mergeable_ranks={bytes([i]): i for i in range(256)},
                          special_tokens={})
    except Exception as e:  # fancy-regex compile error raised from Rust
        raise UserError(f"tokenizer.pattern: not a valid regex ({e})") from None
    counter = [0]
    feed = _limited(texts, max_bytes, counter, log, stop, total_bytes)
    global _trained_in_process
    if stop is not None and not _trained_in_process and "fork" in multiprocessing.get_all_start_methods():
        ranks, n_bytes = _train_in_child(feed, counter, n_ranks, pattern, stop)
        return ranks, None, n_bytes
    _trained_in_process = True
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(feed, n_ranks, pattern=pattern)
    if stop is not None and stop.is_set():
        raise Stopped()
    return dict(trainer.get_mergeable_ranks()), trainer, counter[0]


def _train_in_child(feed: Iterator[str], counter: list[int], n_ranks: int, pattern: str,
                    stop: threading.Event) -> tuple[dict[bytes, int], int]:
    """(ranks, bytes read), trained in a forked child. rustbpe holds the GIL through its merge loop, one
    native call of up to minutes that no signal interrupts; in a child, a stop (SIGTERM, `runs stop`)
    is honoured within a poll: the child is killed and Stopped raised. The child reads the corpus
    itself (the feed is forked with it) and logs progress to the same event file."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_train, args=(feed, counter, n_ranks, pattern, send), daemon=True)
    child.start()
    send.close()
    try:
        while not receive.poll(_STOP_POLL_S):
            if stop.is_set():
                raise Stopped()
            if not child.is_alive() and not receive.poll(0):
                raise RuntimeError(f"the tokenizer training process died (exit code {child.exitcode})")
        try:
            outcome, value, n_bytes = receive.recv()
        except EOFError:
            raise RuntimeError(f"the tokenizer training process died (exit code {child.exitcode})") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    if outcome == "ok":
        return value, n_bytes
    if outcome == "stopped":
        raise Stopped()
    if outcome == "input":
        raise UserError(value)
    raise RuntimeError(f"tokenizer training failed: {value}")


def _child_train(feed: Iterator[str], counter: list[int], n_ranks: int, pattern: str, send: Any) -> None:
    """The body of the training child: train, send back ("ok", ranks, bytes) or the failure as text
    (exceptions with their own constructors do not all survive pickling)."""
    try:
        trainer = rustbpe.Tokenizer()
        trainer.train_from_iterator(feed, n_ranks, pattern=pattern)
        send.send(("ok", dict(trainer.get_mergeable_ranks()), counter[0]))
    except Stopped:
        send.send(("stopped", "", counter[0]))
    except UserError as e:
        send.send(("input", str(e), counter[0]))
    except BaseException as e:  # noqa: BLE001 - a Rust panic (pyo3 PanicException) included
        send.send(("failed", f"{type(e).__name__}: {e}", counter[0]))
    finally:
        send.close()


def train_bpe(texts: Iterable[str], vocab_size: int, pattern: str = GPT4_SPLIT_PATTERN, *,
              chat_template: str = "chatml", name: str = "bpe", max_bytes: int = 0, log=None,
              stop: threading.Event | None = None, total_bytes: int | None = None) -> Tokenizer:
    """Train a byte-level BPE of exactly `vocab_size` ids (special tokens included) on `texts`
    (at most `max_bytes` of them, 0 = all). Raises UserError for a bad size or a corpus too small,
    core.errors.Stopped when `stop` is set."""
    check_vocab_size(vocab_size, chat_template)
    specials = special_tokens_for(chat_template)
    n_ranks = vocab_size - len(specials)
    if log is not None:
        log.log({"kind": "progress", "what": "training tokenizer", "done": 0,
                 "total": total_bytes or max_bytes or 0, "unit": "bytes"})
        log.log({"kind": "log", "level": "info",
                 "message": f"training a BPE tokenizer: vocab {vocab_size} ({n_ranks - 256} merges + "
                            f"{len(specials)} special tokens)"})
    t0 = time.perf_counter()
    ranks, _, n_bytes = train_ranks(texts, n_ranks, pattern, max_bytes=max_bytes, log=log, stop=stop,
                                    total_bytes=total_bytes)
    if n_bytes == 0:
        raise UserError("tokenizer: the corpus is empty; check data.source and the data filters")
    if len(ranks) < n_ranks:
        possible = len(ranks) - 256
        raise UserError(
            f"tokenizer.vocab_size: the corpus ({n_bytes:,} bytes) is too small for a vocabulary of {vocab_size}: "
            f"only {possible} merges were possible of the {n_ranks - 256} needed; lower tokenizer.vocab_size "
            f"to at most {len(ranks) + len(specials)} or use more text")
    special_ids = {tok: n_ranks + i for i, tok in enumerate(specials)}
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special_ids)
    tok = Tokenizer(enc, name, chat_template, mergeable_ranks=ranks)
    if log is not None:
        seconds = time.perf_counter() - t0
        log.log({"kind": "progress", "what": "training tokenizer", "done": n_bytes, "total": n_bytes, "unit": "bytes"})
        log.log({"kind": "log", "level": "info",
                 "message": f"trained the tokenizer on {n_bytes / 1e6:.1f} MB in {seconds:.1f} s"})
    return tok
