"""The judge client against a real local HTTP server speaking the chat-completions protocol."""

import json
import socket
import time

import pytest

from core.eval.judge import (JudgeClient, JudgeError, answer_instructions, pairwise, parse_score, parse_verdict,
                             score_answers)

from judge_server import completion, user_text

ITEMS = [{"instruction": "Who went to the park?", "input": "Mia went to the park.", "reference": "Mia",
          "answer": a} for a in ("Mia went there, good.", "Tom.", "Mia, good answer here.", "???")]


def test_rubric_scores_garbage_and_the_key_never_leaks(serve, monkeypatch):
    def reply(body, n):
        text = user_text(body)
        if "???" in text:
            return 200, completion("I refuse to grade this."), 0
        return 200, completion("Reasoning.\nScore: 90" if "good" in text else "Wrong person.\nScore: 30"), 0

    srv = serve(reply)
    monkeypatch.setenv("LLMLAB_TEST_JUDGE_KEY", "sk-very-secret")
    client = JudgeClient(srv.base_url, "judge-model", api_key_env="LLMLAB_TEST_JUDGE_KEY", timeout_s=5, backoff_s=0.01)
    r = score_answers(client, ITEMS, scale="0-100")
    assert (r["n"], r["n_scored"], r["n_unparseable"], r["n_failed"]) == (4, 3, 1, 0)
    assert r["mean"] == pytest.approx(70.0)
    assert r["ci_low"] < 70 < r["ci_high"]
    assert r["mean_answer_chars"] == pytest.approx(sum(len(i["answer"]) for i in ITEMS) / 4)
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["json"]["model"] == "judge-model"
    assert req["headers"]["Authorization"] == "Bearer sk-very-secret"
    assert "### Reference answer:\nMia" in user_text(req["json"]) and "Score: N" in user_text(req["json"])
    assert "sk-very-secret" not in json.dumps(r)


def test_no_key_no_header_and_1_to_5_scale(serve, monkeypatch):
    monkeypatch.delenv("LLMLAB_TEST_JUDGE_KEY", raising=False)
    srv = serve(lambda body, n: (200, completion("[[4]]"), 0))
    client = JudgeClient(srv.base_url, "m", api_key_env="LLMLAB_TEST_JUDGE_KEY", timeout_s=5)
    r = score_answers(client, ITEMS[:2], scale="1-5")
    assert r["mean"] == 4.0 and r["n_scored"] == 2
    assert "Authorization" not in srv.requests[0]["headers"]
    assert "scale from 1 to 5" in user_text(srv.requests[0]["json"])


def test_server_errors_and_malformed_replies_are_retried(serve):
    srv = serve(lambda body, n: ((500, b"oops", 0) if n == 1 else (200, b"<html>not json</html>", 0) if n == 2
                                 else (200, completion("Score: 55"), 0)))
    client = JudgeClient(srv.base_url, "m", timeout_s=5, retries=2, backoff_s=0.01)
    assert client.chat([{"role": "user", "content": "hi"}]) == "Score: 55"
    assert len(srv.requests) == 3
    srv2 = serve(lambda body, n: (200, b"garbage", 0))
    with pytest.raises(JudgeError, match="not a chat-completions reply.*after 3 attempts"):
        JudgeClient(srv2.base_url, "m", timeout_s=5, retries=2, backoff_s=0.01).chat([{"role": "user", "content": "x"}])
    assert len(srv2.requests) == 3


def test_auth_errors_fail_at_once_naming_the_variable(serve, monkeypatch):
    monkeypatch.setenv("LLMLAB_TEST_JUDGE_KEY", "sk-wrong")
    srv = serve(lambda body, n: (401, b'{"error": "bad key sk-wrong"}', 0))
    client = JudgeClient(srv.base_url, "m", api_key_env="LLMLAB_TEST_JUDGE_KEY", retries=3, backoff_s=0.01)
    with pytest.raises(JudgeError) as e:
        client.chat([{"role": "user", "content": "x"}])
    assert "HTTP 401" in str(e.value) and "$LLMLAB_TEST_JUDGE_KEY" in str(e.value) and "sk-wrong" not in str(e.value)
    assert len(srv.requests) == 1


def test_a_key_echoed_in_the_status_line_is_redacted(serve, monkeypatch):
    def echo(handler):  # a server that puts the request's key into its HTTP reason phrase
        handler.send_response(401, "bad key sk-echoed")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    monkeypatch.setenv("LLMLAB_TEST_JUDGE_KEY", "sk-echoed")
    srv = serve(lambda body, n: (401, echo, 0))
    client = JudgeClient(srv.base_url, "m", api_key_env="LLMLAB_TEST_JUDGE_KEY", retries=1, backoff_s=0.01)
    with pytest.raises(JudgeError) as e:
        client.chat([{"role": "user", "content": "x"}])
    assert "HTTP 401" in str(e.value) and "sk-echoed" not in str(e.value)


def test_slow_server_times_out_retries_and_the_run_finishes(serve):
    srv = serve(lambda body, n: (200, completion("Score: 50"), 3.0))
    client = JudgeClient(srv.base_url, "m", timeout_s=0.2, retries=1, backoff_s=0.01)
    t0 = time.monotonic()
    r = score_answers(client, ITEMS * 2, max_consecutive_failures=2)
    elapsed = time.monotonic() - t0
    assert r["n"] == 8 and r["n_failed"] == 8 and r["n_scored"] == 0
    assert r["n_not_sent"] == 6  # two items tried (two attempts each), then the endpoint is treated as down
    assert len(srv.requests) == 4
    assert "no reply within 0.2 s" in r["error"] and "after 2 attempts" in r["error"]
    assert elapsed < 2.5


def test_a_trickling_reply_hits_the_deadline(serve):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        try:
            for _ in range(40):  # one byte every 0.1 s: each read is quick, the whole is not
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    srv = serve(lambda body, n: (200, trickle, 0))
    client = JudgeClient(srv.base_url, "m", timeout_s=0.5, retries=0)
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match="no reply within 0.5 s"):
        client.chat([{"role": "user", "content": "x"}])
    assert time.monotonic() - t0 < 1.5


def test_unreachable_endpoint_is_counted_not_hung():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    client = JudgeClient(f"http://127.0.0.1:{port}/v1", "m", timeout_s=1, retries=1, backoff_s=0.01)
    r = score_answers(client, ITEMS)
    assert r["n_failed"] == 4 and r["n_scored"] == 0 and r["n_not_sent"] == 1
    assert "cannot reach the endpoint" in r["error"]


def test_pairwise_asks_both_orders_and_cancels_position_bias(serve):
    srv = serve(lambda body, n: (200, completion("The first one. [[A]]"), 0))  # a judge that always picks position A
    client = JudgeClient(srv.base_url, "m", timeout_s=5)
    items = [{"instruction": f"Q{i}", "answer_a": f"model answer {i}", "answer_b": f"other answer {i}"} for i in range(3)]
    r = pairwise(client, items)
    assert len(srv.requests) == 6
    for i in range(3):
        ab, ba = user_text(srv.requests[2 * i]["json"]), user_text(srv.requests[2 * i + 1]["json"])
        assert ab.index(f"model answer {i}") < ab.index(f"other answer {i}")
        assert ba.index(f"other answer {i}") < ba.index(f"model answer {i}")
    assert r["win_rate"] == 0.5 and r["ties"] == 3 and r["wins"] == r["losses"] == 0
    assert r["position_consistency"] == 0.0 and r["first_position_rate"] == 1.0


def test_pairwise_win_rate_with_a_content_judge(serve):
    def reply(body, n):
        text = user_text(body)
        a_part = text.split("### Answer A:")[1].split("### Answer B:")[0]
        if "TIEPLEASE" in text:
            return 200, completion("[[C]]"), 0
        if "NOVERDICT" in text:
            return 200, completion("no verdict"), 0
        return 200, completion("[[A]]" if "right" in a_part else "[[B]]"), 0

    srv = serve(reply)
    client = JudgeClient(srv.base_url, "m", timeout_s=5)
    items = [{"instruction": "q1", "answer_a": "right", "answer_b": "wrong"},
             {"instruction": "q2", "answer_a": "right", "answer_b": "wrong"},
             {"instruction": "q3", "answer_a": "wrong", "answer_b": "right"},
             {"instruction": "q4 TIEPLEASE", "answer_a": "x", "answer_b": "y"},
             {"instruction": "q5 NOVERDICT", "answer_a": "x", "answer_b": "y"}]
    r = pairwise(client, items)
    assert (r["wins"], r["losses"], r["ties"], r["n_unparseable"], r["n_judged"]) == (2, 1, 1, 1, 4)
    assert r["win_rate"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert r["position_consistency"] == 1.0
    assert r["samples"][2]["verdict_ab"] == "b" and r["samples"][2]["verdict_ba"] == "b"


def test_parsing():
    assert parse_score("good.\nScore: 87") == 87
    assert parse_score("Score: 87\nOn reflection, Score: 60") == 60
    assert parse_score("**Rating:** 4", "1-5") == 4 and parse_score("[[5]]", "1-5") == 5
    assert parse_score(" 42 ") == 42 and parse_score("73/100") == 73
    assert parse_score("Score: 140") is None and parse_score("Score: 0", "1-5") is None
    assert parse_score("on a scale from 0 to 100 it is fine") is None and parse_score("") is None
    assert parse_verdict("thus [[B]]") == "B" and parse_verdict("[[C]]") == "tie"
    assert parse_verdict("[[A]] or [[B]]") is None and parse_verdict("A is better") is None


def test_model_answers_in_both_templates(tok, model):
    recs = [{"instruction": "Who went to the park?", "input": "Mia went to the park."},
            {"instruction": "List the things.", "input": ""}]
    a = answer_instructions(model, tok, recs, template="alpaca", max_new_tokens=5)
    c = answer_instructions(model, tok, recs, template="chat", max_new_tokens=5)
    assert len(a) == len(c) == 2 and all(isinstance(x, str) for x in a + c)
    assert answer_instructions(model, tok, recs, max_new_tokens=5) == a  # greedy: deterministic


def test_a_local_judge_is_reached_directly_despite_a_proxy(serve, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    srv = serve(lambda body, n: (200, completion("Score: 12"), 0))
    assert JudgeClient(srv.base_url, "m", timeout_s=5, retries=0).chat([{"role": "user", "content": "x"}]) == "Score: 12"


def test_judge_biases_length_position_and_noise_with_a_biased_local_judge(serve):
    """A judge on 127.0.0.1 that scores by length, always prefers the first answer, and is noisy when sampled."""
    from core.eval.judge_bias import length_controlled_win_rate

    def reply(body, n):
        text = user_text(body)
        if "### Answer A:" in text:  # pairwise: always position A
            return 200, completion("[[A]]"), 0
        answer = text.split("### Response:")[1].strip().split("\n\n")[0]
        score = min(100, len(answer.strip()) * 2)
        if body.get("temperature", 0) > 0:  # the second sample: far off every other time
            score = (score + 50 * (n % 2)) % 101
        return 200, completion(f"Score: {score}"), 0

    srv = serve(reply)
    client = JudgeClient(srv.base_url, "m", timeout_s=5)
    items = [{"instruction": f"Q{i}", "answer": "word " * (i + 1)} for i in range(10)]
    r = score_answers(client, items, resample=6)
    assert r["bias"]["length_correlation"]["r"] > 0.95 and r["bias"]["length_correlation"]["n"] == 10
    agree = r["bias"]["sample_agreement"]
    assert agree["n"] == 6 and 0.3 <= agree["agreement"] <= 0.7
    pairs = [{"instruction": f"Q{i}", "answer_a": "a" * (i + 1), "answer_b": "b" * 3} for i in range(6)]
    p = pairwise(client, pairs)
    assert p["bias"]["flip"] == {"flip_rate": 1.0, "n_flipped": 6, "n": 6}
    # longer answers win: the length-controlled rate removes what length explains
    lc = length_controlled_win_rate([1.0] * 30 + [0.0] * 10, [50.0] * 30 + [-50.0] * 10)
    assert lc["win_rate"] == 0.75 and lc["length_coef"] > 2 and abs(lc["lc_win_rate"] - 0.5) < 0.2
