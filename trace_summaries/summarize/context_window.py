"""Fitting a trace into the model's context: how large the window is, and how much trace text fits in it.

A prompt that does not fit is refused (OpenAI, vLLM) or cut by the server (llama.cpp, which then loses the
end of the trace or the instructions). So the window is known before the first call, from the first of:

1. ``TRACE_SUMMARIES_LLM_CONTEXT_TOKENS`` (the operator knows best);
2. what the endpoint reports: llama.cpp's ``/props`` (the context of one slot), vLLM's ``/v1/models``
   (``max_model_len``);
3. the table below, for the models we name;
4. ``UNKNOWN_CONTEXT_TOKENS``, small on purpose: a short text costs detail, a refused one costs the summary.

The trace text then gets what the window leaves after the fixed prompt and the room kept for the answer,
converted to characters at ``CHARS_PER_TOKEN`` (a conservative ratio for our line-numbered text: numbers,
JSON and identifiers tokenize densely), and the renderer samples the text down to it, keeping original line
numbers. If the endpoint still answers that the context is exceeded, the trace is rendered again at half
the size and retried once (``summarize.partition``).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2

# Context windows (tokens) by model name prefix, lower case; the longest matching prefix wins, so dated
# snapshots (``gpt-4.1-nano-2025-04-14``) find their family. Local GGUF names match by substring too.
KNOWN_CONTEXT_TOKENS: dict[str, int] = {
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-5": 400_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "smollm2": 8_192,
    "qwen2.5-coder-0.5b": 32_768,
    "qwen2.5": 32_768,
}
UNKNOWN_CONTEXT_TOKENS = 8_192
CHARS_PER_TOKEN = 3.0
# Tokens the chat template, the trace name and the message framing add around the texts we count.
FRAMING_TOKENS = 64
# Whatever the window, never budget the text below this (a text that small says little; the endpoint's
# refusal then triggers the shrink-and-retry path instead).
MIN_TEXT_CHARS = 2_000


@dataclass(frozen=True)
class ContextWindow:
    """The window to plan for, and whether the endpoint itself reported it (a self-hosted server that
    serves structured output by grammar: llama.cpp, vLLM)."""

    tokens: int
    reported_by_endpoint: bool


def table_context_tokens(model: str) -> int | None:
    """The window of a model we name, by the longest matching prefix (or substring for local names)."""
    name = model.lower().rsplit("/", 1)[-1]
    matches = [prefix for prefix in KNOWN_CONTEXT_TOKENS if name.startswith(prefix) or prefix in name]
    return KNOWN_CONTEXT_TOKENS[max(matches, key=len)] if matches else None


def reported_context_tokens(
    base_url: str, model: str, api_key: str | None, timeout_s: float = 5.0
) -> int | None:
    """What an OpenAI-compatible server says about its context, or None (OpenAI itself says nothing).

    llama.cpp serves ``/props`` beside ``/v1`` (``default_generation_settings.n_ctx``: one slot's share);
    vLLM lists ``max_model_len`` for each model of ``/v1/models``. Any error means "not reported".
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx2.Client(timeout=timeout_s, headers=headers) as client:
            props = client.get(f"{root}/props")
            if props.status_code == 200:
                body = props.json()
                settings = body.get("default_generation_settings") or {}
                n_ctx = settings.get("n_ctx") or body.get("n_ctx")
                if isinstance(n_ctx, int) and n_ctx > 0:
                    return n_ctx
            models = client.get(f"{base_url.rstrip('/')}/models")
            if models.status_code == 200:
                for entry in models.json().get("data") or []:
                    length = entry.get("max_model_len")
                    if entry.get("id") == model and isinstance(length, int) and length > 0:
                        return length
    except (httpx2.HTTPError, ValueError, AttributeError):
        return None
    return None


def context_tokens(model: str, *, override: int | None = None, reported: int | None = None) -> int:
    """The window to plan for (see the module doc for the order)."""
    return override or reported or table_context_tokens(model) or UNKNOWN_CONTEXT_TOKENS


def text_budget_chars(window_tokens: int, *, answer_tokens: int, prompt_chars: int) -> int:
    """Characters of trace text that fit beside the fixed prompt (``prompt_chars``) and the answer."""
    free = window_tokens - answer_tokens - FRAMING_TOKENS - prompt_chars / CHARS_PER_TOKEN
    return max(MIN_TEXT_CHARS, int(free * CHARS_PER_TOKEN))
