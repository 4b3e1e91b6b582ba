"""An LLM judge through any OpenAI-compatible chat-completions endpoint (Ollama, vLLM, llama.cpp, OpenAI).

Single-answer grading: each answer to a held-out instruction gets a rubric score (0-100 or 1-5);
the report has the mean with a 95% interval, how many judge replies could not be parsed or failed,
and the mean answer length beside it (judges favour longer answers). Pairwise: two models answer the
same prompts and the judge picks one; every pair is asked in both orders so position bias cancels,
and the win rate counts a tie as half. The client is urllib only: a timeout per request, a deadline
on reading the reply, retries with exponential backoff, and after a run of failed requests the rest
are counted as failed instead of waited for, so an evaluation always finishes. The API key is read
from the environment variable the preset names, per request, and is never stored or logged.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.eval.judge_bias import flip_rate, length_controlled_win_rate, length_correlation, sample_agreement
from core.eval.metrics import mean_ci
from core.runs import Logger

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

SCALES = {"0-100": (0.0, 100.0), "1-5": (1.0, 5.0)}
MAX_REPLY_BYTES = 1 << 20

SYSTEM = "You are a careful, impartial grader of answers written by a small language model."

RUBRIC = {
    "0-100": ("Score the response to the instruction on a scale from 0 to 100, where 100 is a fully correct, "
              "helpful and fluent answer and 0 is wrong, empty or nonsense.{reference_note}\n\n"
              "### Instruction:\n{instruction}\n\n{input_block}{reference_block}### Response:\n{answer}\n\n"
              "Explain briefly, then give the score on the last line as \"Score: N\" with N an integer from 0 to 100."),
    "1-5": ("Rate the response to the instruction on a scale from 1 to 5 (1: wrong or nonsense, 2: mostly wrong, "
            "3: partly right, 4: right with small flaws, 5: fully correct and fluent).{reference_note}\n\n"
            "### Instruction:\n{instruction}\n\n{input_block}{reference_block}### Response:\n{answer}\n\n"
            "Explain briefly, then give the rating on the last line as \"Score: N\" with N from 1 to 5."),
}

PAIRWISE = ("Two assistants answered the instruction below. Decide which answer is better: more correct, "
            "more helpful, more fluent. Do not let the order of the answers or their length sway you.\n\n"
            "### Instruction:\n{instruction}\n\n{input_block}"
            "### Answer A:\n{answer_a}\n\n### Answer B:\n{answer_b}\n\n"
            "Explain briefly, then end with exactly one verdict: \"[[A]]\" if A is better, \"[[B]]\" if B is "
            "better, \"[[C]]\" for a tie.")


class JudgeError(Exception):
    """A judge request that failed after its retries (the message never contains the API key)."""


# ------------------------------------------------------------------------------------- client

@dataclass
class JudgeClient:
    """POST {base_url}/chat/completions; `chat(messages) -> str` or JudgeError."""
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 1.0
    max_tokens: int = 512
    stop: threading.Event | None = None

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> JudgeClient:
        """From a preset's eval.judge (JudgeConfig)."""
        return cls(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                   retries=cfg.retries, **overrides)

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def _opener(self) -> urllib.request.OpenerDirector:
        # a judge on this machine (Ollama, vLLM) is reached directly even where http_proxy is set;
        # a remote API goes through the environment's proxy settings as usual
        host = (urllib.parse.urlsplit(self.url).hostname or "").lower()
        if host in ("localhost", "127.0.0.1", "::1"):
            return urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener()

    def _once(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:  # a local server (Ollama) needs none; the key lives in this header and nowhere else
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._opener().open(req, timeout=self.timeout_s) as resp:
                # the socket timeout bounds each read; the deadline bounds a server that trickles bytes
                chunks, size = [], 0
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"reply not complete after {self.timeout_s:g} s")
                    chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_REPLY_BYTES:
                        raise ValueError(f"reply larger than {MAX_REPLY_BYTES} bytes")
                raw = b"".join(chunks)
        except urllib.error.HTTPError as e:
            if key and key in str(e.msg):  # a server that echoes the request in its status line
                e.msg = str(e.msg).replace(key, "[redacted]")  # (`reason` is a read-only view of msg)
            raise
        finally:
            del headers  # nothing keeps the key past the request
        if key:  # a broken endpoint or proxy that echoes the request must not put the key in logs or reports
            raw = raw.replace(key.encode(), b"[redacted]")
        del key
        try:
            doc = json.loads(raw)
            content = doc["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            raise ValueError(f"not a chat-completions reply: {raw[:120]!r}") from None
        if not isinstance(content, str):
            raise ValueError("the reply's message content is not text")
        return content

    def chat(self, messages: Sequence[dict], temperature: float = 0.0) -> str:
        """The assistant's reply text. Retries timeouts, connection errors, 408/429/5xx and malformed
        replies with exponential backoff; other HTTP errors (a bad key, a wrong model) fail at once."""
        body = json.dumps({"model": self.model, "messages": list(messages), "temperature": temperature,
                           "max_tokens": self.max_tokens, "stream": False}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if self.stop is not None and self.stop.is_set():
                raise JudgeError("stopped")
            try:
                return self._once(body)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} {e.reason}"
                if e.code == 401 or e.code == 403:
                    raise JudgeError(f"{self.url}: {last}; check the key in ${self.api_key_env}") from None
                if e.code not in (408, 409, 429) and e.code < 500:
                    raise JudgeError(f"{self.url}: {last}") from None
            except urllib.error.URLError as e:
                last = f"cannot reach the endpoint ({e.reason})"
            except http.client.HTTPException as e:  # bytes that are not HTTP: one failed request
                last = f"not an HTTP reply ({type(e).__name__})"
            except (TimeoutError, socket.timeout):
                last = f"no reply within {self.timeout_s:g} s"
            except (ConnectionError, OSError) as e:
                last = f"connection failed ({type(e).__name__})"
            except ValueError as e:
                last = str(e)
            if attempt < self.retries:
                delay = self.backoff_s * 2 ** attempt
                if self.stop is not None:
                    if self.stop.wait(delay):
                        raise JudgeError("stopped")
                else:
                    time.sleep(delay)
        raise JudgeError(f"{self.url}: {last} (after {self.retries + 1} attempts)")


# ------------------------------------------------------------------------------------- parsing

_BRACKETED = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_LABELLED = re.compile(r"(?:score|rating)\s*(?:is|of)?\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE = re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\s*\**\s*(?:/\s*\d+)?\s*\.?\s*$")


def parse_score(text: str, scale: str = "0-100") -> float | None:
    """The score in a judge's reply ("Score: 87", "[[4]]", or the reply being just a number);
    None when there is none or it lies outside the scale."""
    lo, hi = SCALES[scale]
    for pattern in (_BRACKETED, _LABELLED):
        found = pattern.findall(text)
        if found:
            value = float(found[-1])  # the final verdict, after any reasoning
            return value if lo <= value <= hi else None
    m = _BARE.match(text)
    if m:
        value = float(m.group(1))
        return value if lo <= value <= hi else None
    return None


_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_verdict(text: str) -> str | None:
    """'A', 'B', 'tie' ([[C]]) from a pairwise reply; None when absent or ambiguous."""
    found = set(_VERDICT.findall(text))
    if len(found) != 1:
        return None
    v = found.pop()
    return "tie" if v == "C" else v


def _input_block(item: dict) -> str:
    return f"### Input:\n{item['input']}\n\n" if item.get("input") else ""


def rubric_messages(item: dict, scale: str = "0-100") -> list[dict]:
    """Chat messages asking for a rubric score of item["answer"] to item["instruction"] (+ input, reference)."""
    ref = item.get("reference") or ""
    prompt = RUBRIC[scale].format(
        instruction=item["instruction"], input_block=_input_block(item), answer=item["answer"],
        reference_note=" A reference answer is given; a response that means the same is fully correct." if ref else "",
        reference_block=f"### Reference answer:\n{ref}\n\n" if ref else "")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def pairwise_messages(item: dict, first: str, second: str) -> list[dict]:
    prompt = PAIRWISE.format(instruction=item["instruction"], input_block=_input_block(item),
                             answer_a=first, answer_b=second)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


# ------------------------------------------------------------------------------------- scoring

def _lengths(answers: Sequence[str]) -> dict:
    n = len(answers) or 1
    return {"mean_answer_chars": sum(len(a) for a in answers) / n,
            "mean_answer_words": sum(len(a.split()) for a in answers) / n}


class _Breaker:
    """After `limit` failed requests in a row the endpoint is treated as down: the rest are not sent."""

    def __init__(self, limit: int):
        self.limit, self.run, self.reason = limit, 0, ""

    @property
    def open(self) -> bool:
        return self.limit > 0 and self.run >= self.limit

    def record(self, error: str | None) -> None:
        self.run = self.run + 1 if error else 0
        if error:
            self.reason = error


def score_answers(client: JudgeClient, items: Sequence[dict], *, scale: str = "0-100",
                  max_consecutive_failures: int = 3, log: Logger | None = None, stop: threading.Event | None = None,
                  progress: Callable[[int, int], None] | None = None, samples: int = 5, resample: int = 50) -> dict:
    """Rubric scores of items [{"instruction", "input"?, "reference"?, "answer"}]: mean with a 95%
    interval over the parsed scores, counts of unparseable and failed requests, answer length, and
    the judge's biases (core.eval.judge_bias): score-length correlation, and the agreement of a
    second sample (temperature 1) of the first `resample` answers."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; use {', '.join(SCALES)}")
    scores: list[float] = []
    rows, unparseable, failed, skipped = [], 0, 0, 0
    breaker = _Breaker(max_consecutive_failures)
    for i, item in enumerate(items):
        if stop is not None and stop.is_set():
            break
        score, reply, error = None, "", None
        if breaker.open:
            skipped += 1
            error = f"not sent: the endpoint failed {breaker.run} times in a row ({breaker.reason})"
        else:
            try:
                reply = client.chat(rubric_messages(item, scale))
            except JudgeError as e:
                error = str(e)
                if log is not None:
                    log.log({"kind": "log", "level": "warning", "message": f"judge request {i + 1}: {error}"})
            breaker.record(error)
        if error:
            failed += 1
        else:
            score = parse_score(reply, scale)
            if score is None:
                unparseable += 1
            else:
                scores.append(score)
        rows.append({"instruction": item["instruction"], "answer": item["answer"], "score": score,
                     "judge_reply": reply[-400:], "error": error})
        if progress is not None:
            progress(i + 1, len(items))
    ci = mean_ci(scores)
    bias = {"length_correlation": length_correlation([r["score"] for r in rows], [len(r["answer"]) for r in rows]),
            "sample_agreement": _second_samples(client, items, rows, scale, resample, breaker, stop)}
    return {"scale": scale, "mean": ci["mean"], "bias": bias, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "stderr": ci["stderr"], "n": len(rows), "n_scored": len(scores), "n_unparseable": unparseable,
            "n_failed": failed, "n_not_sent": skipped, "error": breaker.reason if failed else None,
            **_lengths([r["answer"] for r in rows]),
            "judge": {"base_url": client.base_url, "model": client.model},  # never the key
            "samples": rows[:samples]}


def _second_samples(client: JudgeClient, items: Sequence[dict], rows: list[dict], scale: str, k: int,
                    breaker: _Breaker, stop: threading.Event | None) -> dict:
    """A second score (temperature 1) of the first k scored answers, compared with the first."""
    firsts, seconds = [], []
    for item, row in list(zip(items, rows))[:k]:
        if row["score"] is None or breaker.open or (stop is not None and stop.is_set()):
            continue
        try:
            reply = client.chat(rubric_messages(item, scale), temperature=1.0)
            breaker.record(None)
        except JudgeError as e:
            breaker.record(str(e))
            continue
        firsts.append(row["score"])
        seconds.append(parse_score(reply, scale))
    return sample_agreement(firsts, seconds, SCALES[scale])


def pairwise(client: JudgeClient, items: Sequence[dict], *, max_consecutive_failures: int = 3, log: Logger | None = None,
             stop: threading.Event | None = None, progress: Callable[[int, int], None] | None = None,
             samples: int = 5) -> dict:
    """Win rate of answer_a over answer_b on items [{"instruction", "input"?, "answer_a", "answer_b"}].

    Each pair is judged twice, A first and then B first. Per judgement a win counts 1, a tie 0.5; a
    pair's score is the mean of its two judgements (win > 0.5, loss < 0.5, tie = 0.5), and the win
    rate is the mean over pairs with both verdicts parsed. Position consistency is the share of pairs
    whose two verdicts agree; first_position_rate how often the judge picked whichever came first."""
    outcomes, rows = [], []
    wins = losses = ties = unparseable = failed = skipped = consistent = first_picks = decided = 0
    breaker = _Breaker(max_consecutive_failures)
    for i, item in enumerate(items):
        if stop is not None and stop.is_set():
            break
        verdicts: list[str | None] = []
        error = None
        for order in ("ab", "ba"):  # ask both orders: the judge sees each answer first once
            first, second = (item["answer_a"], item["answer_b"]) if order == "ab" else (item["answer_b"], item["answer_a"])
            if breaker.open:
                error = f"not sent: the endpoint failed {breaker.run} times in a row ({breaker.reason})"
                skipped += 1
                verdicts.append(None)
                continue
            try:
                reply = client.chat(pairwise_messages(item, first, second))
                err = None
            except JudgeError as e:
                reply, err = "", str(e)
                if log is not None:
                    log.log({"kind": "log", "level": "warning", "message": f"judge pair {i + 1} ({order}): {err}"})
            breaker.record(err)
            if err:
                error = err
                verdicts.append(None)
                continue
            v = parse_verdict(reply)
            if v in ("A", "B"):
                decided += 1
                first_picks += v == "A"
                # map the position back to the model: in the swapped order, position A is model b
                v = ("a" if v == "A" else "b") if order == "ab" else ("b" if v == "A" else "a")
            verdicts.append(v)
        row = {"instruction": item["instruction"], "verdict_ab": verdicts[0], "verdict_ba": verdicts[1],
               "error": error}
        if error:
            failed += 1
        elif None in verdicts:
            unparseable += 1
        else:
            s = sum(1.0 if v == "a" else 0.5 if v == "tie" else 0.0 for v in verdicts) / 2
            outcomes.append(s)
            consistent += verdicts[0] == verdicts[1]
            wins += s > 0.5
            losses += s < 0.5
            ties += s == 0.5
            row["score"] = s
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(items))
    ci = mean_ci(outcomes)
    n = len(outcomes)
    judged = [(r, it) for r, it in zip(rows, items) if "score" in r]
    bias = {"flip": flip_rate([(r["verdict_ab"], r["verdict_ba"]) for r, _ in judged]),
            "length_controlled": length_controlled_win_rate(
                [r["score"] for r, _ in judged], [len(it["answer_a"]) - len(it["answer_b"]) for _, it in judged])}
    return {"win_rate": ci["mean"], "bias": bias, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "stderr": ci["stderr"],
            "wins": wins, "losses": losses, "ties": ties, "n": len(rows), "n_judged": n,
            "n_unparseable": unparseable, "n_failed": failed, "n_not_sent": skipped,
            "position_consistency": consistent / n if n else float("nan"),
            "first_position_rate": first_picks / decided if decided else float("nan"),
            "error": breaker.reason if failed else None,
            "a": _lengths([it["answer_a"] for it in items[:len(rows)]]),
            "b": _lengths([it["answer_b"] for it in items[:len(rows)]]),
            "judge": {"base_url": client.base_url, "model": client.model},
            "samples": rows[:samples]}


# ---------------------------------------------------------------------------------- answering

def answer_instructions(model: Any, tokenizer: TextTokenizer, records: Sequence[dict], *, template: str = "alpaca",
                        max_new_tokens: int = 64, sampling: dict | None = None,
                        stop: threading.Event | None = None,
                        progress: Callable[[int, int], None] | None = None) -> list[str]:
    """The model's answers to instruction records ({"instruction", "input"?}) in the finetuning template."""
    from core.generate import generate_text
    from core.train.instruct import prompt_ids, stop_ids

    opts = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": None, **(sampling or {})}
    opts["max_new_tokens"] = max_new_tokens
    answers = []
    ctx = model.config.context_length
    ends = stop_ids(tokenizer, template)
    for i, rec in enumerate(records):
        if stop is not None and stop.is_set():
            break
        ids = prompt_ids(tokenizer, template, rec["instruction"], rec.get("input") or "")
        ids = list(ids)[-max(1, ctx - 1):]  # keep room for at least one new token
        text = "".join(generate_text(model, tokenizer, ids, stop_ids=ends, stop=("\n### ",), **opts))
        answers.append(text.strip())
        if progress is not None:
            progress(i + 1, len(records))
    return answers
