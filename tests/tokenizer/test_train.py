"""BPE training with rustbpe: sizes, bad input, stopping, and exact agreement of the saved tiktoken
encoding with rustbpe's own encoder on random text."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import GPT4_SPLIT_PATTERN
from core.errors import UserError
from core.errors import Stopped
from core.tokenizer import Tokenizer, get_tokenizer, train_bpe
from core.tokenizer.inspect import merge_parents
from core.tokenizer.train import train_ranks


class Events:
    def __init__(self):
        self.events: list[dict] = []

    def log(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def test_trained_vocabulary_has_exact_size_and_specials_last(trained, corpus):
    assert trained.n_vocab == 512
    assert trained.special_tokens == {"<|endoftext|>": 509, "<|im_start|>": 510, "<|im_end|>": 511}
    assert trained.eot_id == 509
    assert len(trained.mergeable_ranks) == 509
    for doc in corpus[:50]:
        assert trained.decode(trained.encode(doc)) == doc
    # frequent words of the corpus became single tokens
    assert len(trained.encode(" the")) == 1 and len(trained.encode(" said")) == 1
    assert trained.encode_batch(corpus[:3]) == [trained.encode(d) for d in corpus[:3]]


def test_training_is_deterministic(trained, corpus):
    again = train_bpe(corpus, 512, name="test-bpe")
    assert again.fingerprint == trained.fingerprint


def test_every_merge_has_two_parents_of_lower_rank(trained):
    ranks = trained.mergeable_ranks
    for token, rank in ranks.items():
        if rank < 256:
            assert len(token) == 1
            continue
        left, right = merge_parents(ranks, token)
        assert left + right == token
        assert ranks[left] < rank and ranks[right] < rank


def test_progress_events_start_and_end(corpus):
    log = Events()
    train_bpe(corpus[:200], 300, log=log, max_bytes=50_000)
    progress = [e for e in log.events if e["kind"] == "progress"]
    assert progress[0]["done"] == 0 and progress[0]["what"] == "training tokenizer"
    assert progress[-1]["done"] == progress[-1]["total"] == 50_000
    assert any(e["kind"] == "log" and "trained the tokenizer" in e["message"] for e in log.events)


@pytest.mark.parametrize("vocab, match", [
    (258, "use at least 259"),
    (65_537, "above the limit of 65536"),
])
def test_bad_vocabulary_sizes(corpus, vocab, match):
    with pytest.raises(UserError, match=match):
        train_bpe(corpus[:10], vocab)


def test_corpus_too_small_says_how_many_merges_were_possible():
    with pytest.raises(UserError) as e:
        train_bpe(["hello world, hello there"] * 3, 1000)
    msg = str(e.value)
    assert "too small for a vocabulary of 1000" in msg
    assert "merges were possible of the 741 needed" in msg
    with pytest.raises(UserError, match="corpus is empty"):
        train_bpe([], 300)


def test_bad_pattern_is_a_user_error(corpus):
    with pytest.raises(UserError, match="tokenizer.pattern: not a valid regex"):
        train_bpe(corpus[:10], 300, pattern="(unclosed")


def test_stop_event_stops_training(corpus):
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        train_bpe(corpus, 512, stop=stop)


def test_other_split_pattern_is_used(corpus, gpt2_cache):
    gpt2_pattern = get_tokenizer("gpt2").pattern
    tok = train_bpe(corpus[:200], 400, pattern=gpt2_pattern)
    assert tok.pattern == gpt2_pattern != GPT4_SPLIT_PATTERN


# ------------------------------------------------------------------ tiktoken == rustbpe on any text

@pytest.fixture(scope="module")
def twin(corpus, tmp_path_factory):
    """The rustbpe trainer and the tiktoken encoding saved from its ranks and loaded back."""
    texts = corpus + ["def f(x):\n    return x ** 2  # 😀 ünïcödé\n\n\t\tend   ", "日本語のテキスト 🚀🚀 ok"] * 20
    ranks, trainer, _ = train_ranks(texts, 600)
    import tiktoken
    enc = tiktoken.Encoding("twin", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})
    folder = Tokenizer(enc, "twin", mergeable_ranks=ranks).save(tmp_path_factory.mktemp("twin") / "tok")
    return trainer, Tokenizer.load(folder)


_pieces = st.one_of(
    st.text(max_size=40),  # any unicode
    st.sampled_from(["😀", "🦙🦙", "👩‍👩‍👧", "é", "ß", "中文", "\u200b", "ﬁ"]),
    st.sampled_from(["def f(x):", "return x**2;", "{\"k\": [1, 2]}", "i += 1", "#include <stdio.h>", "0x1F"]),
    st.from_regex(r"[ \t\n\r]{1,12}", fullmatch=True),  # whitespace runs
    st.sampled_from(["The cat", " said", " river", "Story 12 ends", "<|endoftext|>", "<|im_end|>"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_pieces, max_size=8).map("".join))
def test_saved_encoding_matches_rustbpe_and_round_trips(twin, text):
    trainer, tok = twin
    ids = tok.encode(text)
    assert ids == trainer.encode(text)
    assert tok.decode(ids) == text


def test_a_stoppable_training_after_an_in_process_one_does_not_hang():
    """rustbpe's thread pool does not survive a fork: once a process has trained in-process, a
    stoppable training (which forks a child when it can) must train in-process too, not wait forever."""
    import subprocess
    import sys

    code = ("import threading; import core.tokenizer.train as t\n"
            "texts = [f'the cat {i} sat on the mat {i * 7}' for i in range(2000)]\n"
            "t.train_ranks(texts, 300)\n"
            "r, _, n = t.train_ranks(texts, 300, stop=threading.Event())\n"
            "print(len(r), n)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split()[0] == "300"
