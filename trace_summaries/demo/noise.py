"""Non-AI product events around the AI traces: what the pipeline must read past, never summarize.

A real ``events`` table is mostly pageviews and clicks. Seeding them into the same team-hours checks that the
pipeline filters on event type rather than on the presence of ``$ai_trace_id``: a custom
``chat_message_sent`` event carries the trace id of the conversation it belongs to, as apps that link
product analytics to LLM traces do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from trace_summaries.demo.identity import random_uuid4

# Non-AI events per AI trace, on average.
NON_AI_EVENTS_PER_TRACE = 1.0

_PAGES = ("/", "/pricing", "/app/dashboard", "/app/files", "/app/settings/billing", "/help/sync", "/app/chat")
_BROWSERS = (("Chrome", "Mac OS X"), ("Safari", "iOS"), ("Firefox", "Windows"), ("Chrome", "Android"))
_BUTTONS = ("Upload", "Share", "Upgrade plan", "Send", "New folder", "Open chat")
_FLAGS = ("new-chat-ui", "smart-sync", "billing-v2")


def non_ai_events(
    rng: random.Random,
    hour: datetime,
    traces_per_hour: int,
    users: Sequence[str],
    trace_ids: Sequence[str],
) -> Iterator[tuple[datetime, str, dict[str, Any], str]]:
    """``(timestamp, event, properties, distinct_id)`` rows spread over the hour."""
    count = round(traces_per_hour * NON_AI_EVENTS_PER_TRACE)
    for _ in range(count):
        user = rng.choice(users)
        timestamp = hour + timedelta(seconds=rng.uniform(0.0, 3599.999))
        browser, os_name = rng.choice(_BROWSERS)
        common: dict[str, Any] = {
            "$browser": browser,
            "$os": os_name,
            "$session_id": random_uuid4(rng),
            "$lib": "web",
            "$lib_version": "1.260.1",
        }
        roll = rng.random()
        if roll < 0.5:
            page = rng.choice(_PAGES)
            yield (
                timestamp,
                "$pageview",
                {
                    **common,
                    "$current_url": f"https://app.acme.example{page}",
                    "$pathname": page,
                    "$referrer": "$direct",
                },
                user,
            )
        elif roll < 0.75:
            yield (
                timestamp,
                "$autocapture",
                {
                    **common,
                    "$event_type": "click",
                    "$el_text": rng.choice(_BUTTONS),
                    "$elements_chain": f'button.btn.btn-primary:text="{rng.choice(_BUTTONS)}"nth-child="2"',
                },
                user,
            )
        elif roll < 0.85:
            yield (
                timestamp,
                "$feature_flag_called",
                {
                    **common,
                    "$feature_flag": rng.choice(_FLAGS),
                    "$feature_flag_response": rng.random() < 0.5,
                },
                user,
            )
        elif roll < 0.92 or not trace_ids:
            yield timestamp, "$pageleave", {**common, "$pathname": rng.choice(_PAGES)}, user
        else:
            # Not an AI event, yet it names a trace: the pipeline must still leave it out.
            yield (
                timestamp,
                "chat_message_sent",
                {
                    **common,
                    "$ai_trace_id": rng.choice(trace_ids),
                    "message_length": rng.randint(5, 400),
                },
                user,
            )
