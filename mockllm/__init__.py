"""A small, deterministic, OpenAI-compatible mock LLM for tests and local runs (stdlib only).

Library use (pytest fixtures)::

    from mockllm import start_mock_llm
    mock = start_mock_llm(["127.0.0.1", "172.30.0.1"], 0)   # port 0: pick a free port
    mock.url          # "http://127.0.0.1:PORT/v1"
    mock.requests()   # recorded completions
    mock.stop()

Command line: ``python -m mockllm --host 127.0.0.1 --host 172.30.0.1 --port 18999``.
"""

from .server import (
    MockLLM,
    completion_tokens_for,
    prompt_tokens_for,
    reply_for,
    start_mock_llm,
)

__all__ = [
    "MockLLM",
    "completion_tokens_for",
    "prompt_tokens_for",
    "reply_for",
    "start_mock_llm",
]
