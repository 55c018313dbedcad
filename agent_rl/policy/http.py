"""Any OpenAI-compatible chat server (OpenAI, vLLM's `vllm serve`, llama.cpp, SGLang, ...) as a Policy.

This policy is for evaluating hosted or served models, not for training: the server returns text
only, so `PolicyOutput.prompt_ids`, `token_ids` and `logprobs` stay empty, and the trainer needs the
exact token ids that were sampled (re-tokenizing the text would not reproduce them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from agent_rl.policy.base import PolicyOutput, PolicyRequest

if TYPE_CHECKING:  # typing.Self needs Python 3.11; annotations are never evaluated at runtime here
    from typing_extensions import Self


class PolicyHTTPError(RuntimeError):
    """A chat-completion request failed for good: a permanent HTTP error, retries used up, or a bad reply."""

    def __init__(self, url: str, status: int | None, message: str, attempts: int = 1) -> None:
        self.url = url
        self.status = status  # None when no HTTP response came back (connection refused, timeout)
        self.message = message
        self.attempts = attempts
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"POST {url} failed ({where}, {attempts} attempt(s)): {message}")


class OpenAIChatPolicy:
    """Sends one `POST {base_url}/chat/completions` per request, up to `max_concurrency` at a time.

    Outputs come back in request order. Connection errors, timeouts and HTTP 408 / 429 / 5xx are
    retried `max_retries` times with exponential backoff (or the server's numeric Retry-After);
    anything else raises `PolicyHTTPError` naming the URL, the status and the server's message.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        stop: Sequence[str] | None = None,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
    ) -> None:
        """`base_url` includes the API version, e.g. "http://localhost:8000/v1".

        `api_key` defaults to the OPENAI_API_KEY environment variable; with neither, no
        Authorization header is sent (local servers usually need none).
        """
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, got {max_retries}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stop = list(stop) if stop else None
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        # httpx.Client is thread-safe; one pool sized to the concurrency reuses connections across turns.
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        """Answer every request concurrently; the i-th output answers the i-th request."""
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(self._complete, requests))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _complete(self, request: PolicyRequest) -> PolicyOutput:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.stop:
            payload["stop"] = self.stop
        response = self._post(payload)
        return PolicyOutput(text=self._content(response), prompt_text=render_messages(request.messages))

    def _post(self, payload: dict[str, Any]) -> httpx.Response:
        failure: PolicyHTTPError | None = None
        delay = 0.0
        for attempt in range(1, self.max_retries + 2):
            if failure is not None:
                time.sleep(delay)
            backoff = self.retry_backoff * 2 ** (attempt - 1)
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TransportError as err:  # connect errors, timeouts, dropped connections
                failure = PolicyHTTPError(self.url, None, f"{type(err).__name__}: {err}", attempt)
                delay = backoff
                continue
            if response.is_success:
                return response
            failure = PolicyHTTPError(self.url, response.status_code, _server_message(response), attempt)
            if not _is_transient(response.status_code):
                raise failure
            delay = _retry_after(response, default=backoff)
        assert failure is not None  # the loop runs at least once and returns on success
        raise failure

    def _content(self, response: httpx.Response) -> str:
        """choices[0].message.content; a null content (e.g. the token limit hit first) is an empty answer."""
        try:
            content = response.json()["choices"][0]["message"]["content"]
            if content is None:
                return ""  # the collector turns an empty answer into an invalid step, not a crash
            if not isinstance(content, str):
                raise TypeError(f"content is a {type(content).__name__}, not a string")
        except (ValueError, LookupError, TypeError) as err:  # ValueError covers invalid JSON
            raise PolicyHTTPError(
                self.url,
                response.status_code,
                f"malformed chat completion, expected choices[0].message.content "
                f"({type(err).__name__}: {err}); body starts {response.text[:300]!r}",
            ) from err
        return content


def render_messages(messages: Sequence[dict[str, Any]]) -> str:
    """A readable transcript of chat messages, kept as the step's prompt text."""
    return "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content') or ''}" for m in messages)


def _is_transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after(response: httpx.Response, default: float) -> float:
    """The server's Retry-After in seconds when it gives a number (the HTTP-date form is ignored)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return default


def _server_message(response: httpx.Response) -> str:
    """The error text of an OpenAI-style ({"error": {"message"}}) or vLLM-style ({"message"}) body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return response.text.strip()[:500] or response.reason_phrase
