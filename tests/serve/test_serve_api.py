"""The server against the official openai client on 127.0.0.1: replies equal core.generate, concurrent
clients, bad requests, the API key, a client that leaves mid-stream, the judge pointed at it."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from openai import APIStatusError, AuthenticationError, BadRequestError, NotFoundError, OpenAI

from core.generate import generate

MODEL = "tiny-test"


def expected_chat(loaded, messages, max_tokens=16) -> tuple[str, int, int]:
    """(text, prompt tokens, completion tokens) of core.generate on the template-rendered prompt ids."""
    model, tok = loaded
    ids, _ = tok.chat.render(messages, add_generation_prompt=True)
    out = list(generate(model, ids, max_new_tokens=max_tokens, temperature=0, stop_ids=tok.chat.stop_ids))
    return tok.decode(out), len(ids), len(out)


def client(url: str, key: str = "none") -> OpenAI:
    return OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def requests_logged(events: list[dict], n: int, timeout_s: float = 30) -> list[dict]:
    """The request events once there are n (the engine logs a job just after its last reply byte)."""
    deadline = time.monotonic() + timeout_s
    while sum(e["kind"] == "request" for e in events) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return [e for e in events if e["kind"] == "request"]


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json",
                                                                          **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_chat_and_completion_equal_generate_streamed_and_whole(server, loaded):
    url, events = server()
    c = client(url)
    assert [m.id for m in c.models.list().data] == [MODEL]
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell me about Amy."}]
    text, n_prompt, n_out = expected_chat(loaded, messages, 12)
    assert text and n_out == 12
    whole = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=12)
    assert whole.choices[0].message.content == text and whole.choices[0].finish_reason == "length"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == \
        (n_prompt, n_out, n_prompt + n_out)
    chunks = list(c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=12,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == text
    assert chunks[-1].usage.completion_tokens == n_out and chunks[-2].choices[0].finish_reason == "length"
    # completions: the prompt encoded as `llmlab generate` does
    model, tok = loaded
    ids = tok.encode("Once upon a time", allowed_special="all")
    want = tok.decode(list(generate(model, ids, max_new_tokens=8, temperature=0, stop_ids=[tok.eot_id])))
    got = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0)
    assert got.choices[0].text == want and got.usage.prompt_tokens == len(ids)
    streamed = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True)
    assert "".join(ch.choices[0].text for ch in streamed) == want
    done = requests_logged(events, 4)
    assert len(done) == 4 and {e["endpoint"] for e in done} == {"/v1/chat/completions", "/v1/completions"}


def test_stop_strings_and_seeded_sampling(server, loaded):
    url, _ = server()
    c = client(url)
    messages = [{"role": "user", "content": "Hi"}]
    text, _, _ = expected_chat(loaded, messages, 16)
    stop = text[3:5]
    cut = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=16, stop=[stop])
    assert cut.choices[0].message.content == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"
    a, b = (c.chat.completions.create(model=MODEL, messages=messages, temperature=1.0, top_p=0.9, seed=7,
                                      max_tokens=16).choices[0].message.content for _ in range(2))
    assert a == b


def test_eight_concurrent_clients_get_whole_unmixed_replies(server, loaded):
    url, events = server()
    prompts = [f"Story number {i}: {'Amy went home. ' * i}" for i in range(8)]
    want = [expected_chat(loaded, [{"role": "user", "content": p}], 24)[0] for p in prompts]
    assert len(set(want)) > 1
    got: dict[int, str] = {}

    def ask(i: int) -> None:
        c = client(url)
        msgs = [{"role": "user", "content": prompts[i]}]
        if i % 2:
            got[i] = c.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=24)\
                .choices[0].message.content
        else:
            got[i] = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
                model=MODEL, messages=msgs, temperature=0, max_tokens=24, stream=True) if ch.choices)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [got.get(i) for i in range(8)] == want
    assert len(requests_logged(events, 8)) == 8


@pytest.mark.parametrize("body, status, needle", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "colour": 3}', 400, "colour"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "temperature": -1}', 400, "temperature"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "top_p": 0}', 400, "top_p"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400, "max_tokens"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', 400, "max_tokens"),
    (b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n=1"),
    (b'{"model": "tiny-test", "messages": [{"role": "wizard", "content": "x"}]}', 400, "wizard"),
    (b'{"model": "tiny-test", "messages": []}', 400, "messages"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
    (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404, "gpt-9"),
])
def test_bad_requests_get_openai_errors(server, body, status, needle):
    url, events = server()
    code, doc = post(url + "/chat/completions", body)
    assert code == status and needle in doc["error"]["message"]
    assert set(doc["error"]) == {"message", "type", "param", "code"}
    assert events[-1]["status"] == status


def test_a_prompt_longer_than_the_context_and_unknown_paths(server):
    url, _ = server()
    c = client(url)
    with pytest.raises(BadRequestError, match="maximum context length is 1024") as e:
        c.completions.create(model=MODEL, prompt=list(range(1, 300)) * 4, max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(NotFoundError):
        c.models.retrieve("gpt-9")
    code, doc = post(url + "/completions", b'{"prompt": "' + b"x" * (9 << 20) + b'"}')
    assert code == 413 and "larger than 8 MiB" in doc["error"]["message"]
    code, doc = post(url + "/embeddings", b"{}")
    assert code == 404 and "error" in doc
    # max_tokens beyond the room the prompt leaves is cut to that room
    r = c.completions.create(model=MODEL, prompt=list(range(1, 300)) * 3 + [1] * 120, max_tokens=500, temperature=0)
    assert r.usage.total_tokens <= 1024


def test_the_api_key_is_required_and_never_logged(server, loaded):
    url, events = server(api_key="sk-serve-secret")
    code, doc = post(url + "/chat/completions", b'{"model": "tiny-test", "messages": [{"role": "user", "content": "x"}]}')
    assert code == 401 and doc["error"]["code"] == "invalid_api_key"
    with pytest.raises(AuthenticationError):
        client(url, "sk-wrong").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    code, _ = post(url + "/chat/completions", b"{not json")
    assert code == 401  # the key is checked before the body
    ok = client(url, "sk-serve-secret").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                                               temperature=0, max_tokens=4)
    assert ok.usage.completion_tokens == 4
    assert "sk-serve-secret" not in json.dumps(events) and "sk-wrong" not in json.dumps(events)


def test_a_client_that_leaves_mid_stream_stops_its_generation(server, loaded):
    url, events = server()
    c = client(url)
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Go on"}], temperature=0,
                                       max_tokens=900, stream=True)
    for n, _ in enumerate(stream):
        if n == 3:
            break
    stream.close()
    first = requests_logged(events, 1)[0]
    assert first["finish_reason"] == "cancelled" and first["completion_tokens"] < 900
    text, _, _ = expected_chat(loaded, [{"role": "user", "content": "next"}], 8)
    after = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "next"}], temperature=0,
                                      max_tokens=8)
    assert after.choices[0].message.content == text


def test_the_judge_pointed_at_a_served_model(server, loaded, monkeypatch):
    from core.eval.judge import JudgeClient, rubric_messages, score_answers

    url, events = server(api_key="sk-judge")
    monkeypatch.setenv("LLMLAB_TEST_SERVE_KEY", "sk-judge")
    items = [{"instruction": "Who is Amy?", "answer": "A girl."}, {"instruction": "Where?", "answer": "By the hill."}]
    judge = JudgeClient(url, MODEL, api_key_env="LLMLAB_TEST_SERVE_KEY", timeout_s=60, retries=0, max_tokens=12)
    r = score_answers(judge, items)
    assert (r["n"], r["n_failed"]) == (2, 0)
    want = expected_chat(loaded, rubric_messages(items[0]), 12)[0]
    assert r["samples"][0]["judge_reply"] == want[-400:]
    assert [e["status"] for e in requests_logged(events, 2)] == [200, 200]


def test_refusals_name_the_field(server):
    url, _ = server()
    c = client(url)
    with pytest.raises(APIStatusError) as e:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], presence_penalty=1.0)
    assert e.value.status_code == 400 and e.value.body["param"] == "presence_penalty"
    with pytest.raises(BadRequestError) as e:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_completion_tokens=-1)
    assert e.value.body["param"] == "max_tokens" and "must be >= 1, got -1" in e.value.body["message"]


def test_a_served_chat_equals_llmlab_generate_chat(server, ckpt, capsys):
    """The same chat through the server and through `llmlab generate --chat --system` at temperature 0."""
    from core.cli import main

    url, _ = server()
    assert main(["generate", str(ckpt), "Tell me about Amy.", "--chat", "--system", "Be kind.",
                 "--temperature", "0", "--max-new-tokens", "10"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")
    cli_text = out[:-1]  # the command ends its reply with one newline of its own
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Tell me about Amy."}]
    served = client(url).chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=10)
    assert cli_text and served.choices[0].message.content == cli_text
