"""A client for OpenAI-compatible chat endpoints (vLLM, hosted models, `workbench serve-api`), streaming.

Standard library only: one POST to `/chat/completions` with `stream: true`, read as server-sent events.
The API key comes from the environment variable the config names, never from the config file itself.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator

from workbench.config import RemoteConfig
from workbench.variants import Decoding


class RemoteChat:
    """One configured endpoint and model."""

    def __init__(self, settings: RemoteConfig):
        self.settings = settings

    def stream(self, messages: list[dict], decoding: Decoding) -> Iterator[tuple[str, dict]]:
        """Yield `(text_so_far, usage)` as chunks arrive; `usage` fills in when the endpoint reports it.

        Raises OSError (including urllib's HTTPError and URLError) when the endpoint fails or answers garbage.
        """
        body = {
            "model": self.settings.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": decoding.max_new_tokens,
            "temperature": decoding.temperature,
            "top_p": decoding.top_p,
            "seed": decoding.seed,
        }
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env)
            if not key:
                raise OSError(f"environment variable {self.settings.api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.settings.base_url.rstrip("/") + "/chat/completions", json.dumps(body).encode(), headers
        )
        text, usage = "", {}
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                for raw in response:
                    line = raw.decode("utf-8").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("usage"):
                        usage.update(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        if choice.get("finish_reason"):
                            usage["finish_reason"] = choice["finish_reason"]
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            text += piece
                            yield text, usage
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise OSError(f"HTTP {exc.code}: {detail}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OSError(f"not an OpenAI-compatible stream ({exc})") from None
        yield text, usage
