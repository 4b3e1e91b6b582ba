"""Serving: an OpenAI-compatible HTTP server over core.generate (`llmlab serve`, the serve stage).

engine.py queues requests in front of the model, api.py is the Starlette app (the OpenAI request and
reply shapes, errors), server.py binds the socket and runs uvicorn in a thread.
"""

from __future__ import annotations

from pathlib import Path


def server_url(run_dir: str | Path) -> str | None:
    """The base URL a serve run listens on (from its `serving` event), None before it is up."""
    from core.runs import read_events

    events, _ = read_events(Path(run_dir) / "events.jsonl")
    urls = [e["url"] for e in events if e.get("kind") == "serving" and isinstance(e.get("url"), str)]
    return urls[-1] if urls else None
