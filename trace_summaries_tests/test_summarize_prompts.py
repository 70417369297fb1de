"""The versioned prompt files: packaged, mode-specific, and stating the rules of their mode."""

from __future__ import annotations

import pytest

from trace_summaries.summarize import MODE_RULES, PROMPT_VERSION, SUMMARY_MODES, SummaryMode, chat_messages
from trace_summaries.summarize.prompts import load_prompt, system_prompt, user_prompt


@pytest.mark.parametrize("mode", SUMMARY_MODES)
def test_each_mode_prompt_states_its_own_size_rules(mode: SummaryMode) -> None:
    rules = MODE_RULES[mode]
    prompt = system_prompt(mode)
    assert f"{rules.min_bullets}-{rules.max_bullets} bullets" in prompt
    assert f"{rules.min_flow_steps}-{rules.max_flow_steps} " in prompt
    assert "at most 10 words" in prompt
    assert '"L45"' in prompt
    assert "ONE line" in prompt
    assert "Strong user emotion" in prompt or "strong user emotion" in prompt
    assert "↓" in prompt and "✗" in prompt


def test_minimal_mode_keeps_notes_for_critical_items_and_detailed_mode_draws_branches() -> None:
    assert f"0-{MODE_RULES['minimal'].max_notes} notes" in system_prompt("minimal")
    detailed = system_prompt("detailed")
    assert "||" in detailed and "✓" in detailed and "├─→" in detailed


def test_the_user_prompt_embeds_the_trace_text_verbatim() -> None:
    text = "L1: price is $5 and {braces} stay ${as_is}\nL2: done"
    prompt = user_prompt(text, "Checkout")
    assert text in prompt
    assert "Checkout" in prompt
    assert "(unnamed trace)" in user_prompt(text, None)


def test_chat_messages_are_the_mode_system_prompt_then_the_trace() -> None:
    messages = chat_messages("L1: hi", "T", "minimal")
    assert [message["role"] for message in messages] == ["system", "user"]
    assert messages[0]["content"] == load_prompt("system_minimal", PROMPT_VERSION)
    assert "L1: hi" in messages[1]["content"]
