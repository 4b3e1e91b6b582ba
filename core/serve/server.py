"""Running the API: bind the socket (a port in use is bad input), uvicorn in a thread, a clean stop.

`serving(model, tokenizer, model_id, bind(host, port), ...)` is a context manager that yields the base URL
(http://HOST:PORT/v1) while the engine and the HTTP server run; the serve stage waits inside it
for its stop event, tests and benchmarks call the same. uvicorn's own logging is left to warnings
(requests are logged as `request` events by the caller's `log`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from core.errors import UserError

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer
    from core.serve.engine import Job, Outcome


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), or a UserError that says why not."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UserError(f"serve.host: cannot use {host!r} ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"serve.port: {host}:{port} is already in use (another server?); "
                            f"choose another with --port, or --port 0 for any free one") from None
        raise UserError(f"serve.host: cannot listen on {host}:{port} ({e.strerror})") from None
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def request_event(job: Job, out: Outcome) -> dict:
    """The `request` event of a finished job (counts and timings; never the text or the key)."""
    ev = {"kind": "request", "endpoint": job.endpoint, "status": 200 if out.finish_reason != "error" else 500,
          "prompt_tokens": len(job.prompt_ids), "completion_tokens": out.completion_tokens,
          "finish_reason": out.finish_reason, "queued_s": round(out.queued_s, 4),
          "first_token_s": round(out.first_token_s, 4), "seconds": round(out.seconds, 4),
          "tokens_per_s": round(out.completion_tokens / out.seconds, 2) if out.seconds > 0 else 0.0}
    if out.error:
        ev["error"] = out.error
    return ev


@contextmanager
def serving(model: Any, tokenizer: TextTokenizer, model_id: str, sock: socket.socket, *, defaults: dict[str, Any],
            api_key: str = "", log: Callable[[dict], None] = lambda event: None,
            start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve `model` on the listening socket `sock` (from `bind`); yields the base URL and stops
    everything, closing the socket, on exit."""
    import uvicorn

    from core.serve.api import Served, create_app
    from core.serve.engine import Engine

    engine = Engine(model, tokenizer, on_done=lambda job, out: log(request_event(job, out)))
    served = Served(engine, model_id, int(model.config.context_length), defaults, api_key, log)
    config = uvicorn.Config(create_app(served), log_config=None, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), name="serve-http",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        yield base_url(sock)
    finally:
        engine.close()  # running and queued jobs end as cancelled, so open streams finish
        server.should_exit = True
        thread.join(15)
        sock.close()
