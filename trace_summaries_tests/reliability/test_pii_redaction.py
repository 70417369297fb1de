"""Optional PII redaction: off by default, and when on, PII in a trace never reaches the LLM.

The redactor itself is tested as a pure function (line numbering kept, Luhn-checked cards, no false
positives on the numbers traces are full of); then the whole pipeline runs against the fake OpenAI endpoint,
whose recorded requests are searched for every piece of PII, and the written events carry the counts.
"""

from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.sample import TeamHourSample
from trace_summaries.store import TraceStore
from trace_summaries.summarize.partition import PIPELINE_RENDERING, render_trace
from trace_summaries.text_repr import format_trace
from trace_summaries.text_repr.redaction import RedactionConfig, luhn_valid, redact_text, redact_trace_text
from trace_summaries_harness.one_partition import read_summary_events
from trace_summaries_harness.openai_server import OpenAICompatibleServer
from trace_summaries_tests.reliability.ledger import record
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.events import ai_event
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY, checkout_events
from trace_summaries_tests.support.pipeline_defs import SUMMARY_ASSETS, run_production_job

ON = RedactionConfig(enabled=True)

EMAIL = "jane.doe+orders@example.co.uk"
PHONE = "+1 (415) 555-0132"
CARD = "4242 4242 4242 4242"
OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t"
# AWS's documented example key, assembled so secret scanners do not flag the repository.
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
BEARER = "Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0"
ORDER_ID = "ORD-884211"
PII = [EMAIL, PHONE, CARD, OPENAI_KEY, AWS_KEY, GITHUB_TOKEN, JWT, BEARER.split()[1], ORDER_ID]


# ---------------------------------------------------------------------------------------------------------
# The redactor
# ---------------------------------------------------------------------------------------------------------


def numbered(lines: list[str]) -> str:
    width = len(str(len(lines)))
    return "\n".join(f"L{number:0{width}d}: {line}" for number, line in enumerate(lines, start=1))


def test_off_by_default_and_when_disabled() -> None:
    text = numbered([f"mail {EMAIL}", f"card {CARD}"])
    assert RedactionConfig().enabled is False
    assert redact_text(text, RedactionConfig()) == (text, {})


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", EMAIL),
        ("email", "JOHN.SMITH@EXAMPLE.COM"),  # the trace name is upper-cased in the header line
        ("phone", PHONE),
        ("phone", "+44 20 7946 0958"),
        ("phone", "020 7946 0958"),
        ("phone", "(415) 555-0132"),
        ("phone", "415-555-0132"),
        ("phone", "06 12 34 56 78"),
        ("card", CARD),
        ("card", "4242424242424242"),
        ("card", "5555-5555-5555-4444"),
        ("card", "3782 822463 10005"),
        ("api_key", OPENAI_KEY),
        ("api_key", AWS_KEY),
        ("api_key", GITHUB_TOKEN),
        ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("api_key", "xoxb-123456789012-abcdefghijkl"),
        ("token", JWT),
        ("token", BEARER),
    ],
)
def test_each_kind_is_replaced_and_counted(kind: str, value: str) -> None:
    text, counts = ON.redact_text(f"L07: before {value} after")
    assert text == f"L07: before [REDACTED:{kind}] after"
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20 09:00:00",
        "2026-11-20T09:00:00+00:00 then 2026-11-20 0930",
        "20/11/2026 1030",
        "latency 1.23s, cost $0.0002, tokens 1200 / 40",
        "e1129197-c31b-5f85-bf38-ff6ff98f6685",
        "12345678-1234-5678-1234-567812345678",
        "192.168.100.200",
        "version 1.2.3.4",
        "100 200 300 400",
        "amount 12345.67890",
        "epoch 1732435200123",
        "1732435200123456",  # 16 digits, epoch-like: not a card network's first digit
        "├─ [+] [GEN] plan (0.80s, $0.0002, gpt-4.1-mini)",
        "order 1182, room 404, HTTP 503",
        "sk-short",
        "[REDACTED:email]",
    ],
)
def test_the_numbers_and_ids_traces_are_full_of_are_left_alone(value: str) -> None:
    assert ON.redact_text(f"L01: {value}") == (f"L01: {value}", {})


def _digits_failing_luhn(rng: random.Random, length: int) -> str:
    digits = [rng.choice("23456")] + [rng.choice("0123456789") for _ in range(length - 1)]
    number = "".join(digits)
    if luhn_valid(number):
        number = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not luhn_valid(number)
    return number


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), grouped=st.booleans())
def test_a_16_digit_number_that_fails_luhn_is_not_a_card(seed: int, grouped: bool) -> None:
    number = _digits_failing_luhn(random.Random(seed), 16)
    shown = " ".join(number[i : i + 4] for i in range(0, 16, 4)) if grouped else number
    assert ON.redact_text(f"L1: id {shown}") == (f"L1: id {shown}", {})
    # The same digits with the right check digit are a card.
    for last in "0123456789":
        candidate = number[:-1] + last
        if luhn_valid(candidate):
            assert ON.redact_text(f"L1: {candidate}")[1] == {"card": 1}


line_content = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"), max_size=60
) | st.sampled_from([EMAIL, PHONE, CARD, JWT, f"x {OPENAI_KEY} y", "L12: looks numbered", ""])


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.lists(line_content, max_size=3).map(" ".join), min_size=1, max_size=30))
def test_redaction_never_changes_line_numbers_or_the_number_of_lines(lines: list[str]) -> None:
    text = numbered(lines)
    redacted, counts = ON.redact_text(text)
    original_lines, new_lines = text.split("\n"), redacted.split("\n")
    assert len(new_lines) == len(original_lines)
    for before, after in zip(original_lines, new_lines, strict=True):
        prefix = re.match(r"L\d+: ", before)
        assert prefix and after.startswith(prefix.group(0))
        if before == after:
            continue
        assert "[REDACTED:" in after
    assert sum(counts.values()) == redacted.count("[REDACTED:") - text.count("[REDACTED:")


def test_a_rendered_trace_keeps_its_line_map() -> None:
    events = checkout_events()
    events[1]["properties"]["$ai_input"][1]["content"] = f"I am {EMAIL}, call me on {PHONE}"
    rendered = format_trace(events)
    redacted, counts = redact_trace_text(rendered, ON)
    assert counts == {"email": 1, "phone": 1}
    assert redacted.line_map == rendered.line_map and redacted.total_lines == rendered.total_lines
    assert [line.split(": ", 1)[0] for line in redacted.text.split("\n")] == [
        line.split(": ", 1)[0] for line in rendered.text.split("\n")
    ]
    assert EMAIL not in redacted.text and PHONE not in redacted.text


def test_extra_patterns_add_kinds_and_an_empty_pattern_turns_one_off() -> None:
    config = RedactionConfig(enabled=True, extra_patterns={"order_id": r"ORD-\d{6}", "phone": ""})
    text, counts = config.redact_text(f"L1: {ORDER_ID} for {EMAIL}, phone {PHONE}")
    assert text == f"L1: [REDACTED:order_id] for [REDACTED:email], phone {PHONE}"
    assert counts == {"order_id": 1, "email": 1}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bad": "(unclosed"}, "'bad' is not a valid regular expression"),
        ({"no spaces": "x"}, "invalid redaction kind"),
    ],
)
def test_invalid_extra_patterns_are_refused_naming_them(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedactionConfig(enabled=True, extra_patterns=extra)


def test_a_pattern_that_matches_nothing_or_everything_stays_on_its_line() -> None:
    config = RedactionConfig(enabled=True, extra_patterns={"empty": r"x*", "all": r".+"})
    text, counts = config.redact_text("L1: abc\nL2: \nL3: ok")
    assert text == "L1: [REDACTED:all]\nL2: \nL3: [REDACTED:all]"
    assert counts == {"all": 2}


def test_redact_value_covers_nested_values_and_keys() -> None:
    value = {"user": {EMAIL: [f"call {PHONE}", 3, None]}, "deep": [[[[f"key {AWS_KEY}"]]]]}
    redacted, counts = ON.redact_value(value)
    assert EMAIL not in json.dumps(redacted) and AWS_KEY not in json.dumps(redacted)
    assert counts == {"email": 1, "phone": 1, "api_key": 1}
    assert redacted["user"]["[REDACTED:email]"][1:] == [3, None]


# ---------------------------------------------------------------------------------------------------------
# Through the pipeline, against the fake LLM
# ---------------------------------------------------------------------------------------------------------

HOUR = clock.HOUR
END = HOUR + timedelta(hours=1)
TEAM = 71
KEY = f"{clock.HOUR_KEY}|{TEAM}"


def pii_trace(team: int) -> list[Any]:
    at = HOUR + timedelta(minutes=12)
    return [
        ai_event(team, "pii", at, event="$ai_trace", **{"$ai_trace_name": f"Support for {EMAIL}"}),
        ai_event(
            team,
            "pii",
            at + timedelta(seconds=1),
            index=1,
            **{
                "$ai_span_name": "answer",
                "$ai_model": "gpt-4.1-mini",
                "$ai_input": [
                    {"role": "system", "content": f"Use the API key {OPENAI_KEY} and {BEARER}."},
                    {
                        "role": "user",
                        "content": f"I am {EMAIL}, phone {PHONE}, card {CARD}, order {ORDER_ID}.",
                    },
                ],
                "$ai_output_choices": [{"message": {"role": "assistant", "content": f"Session token {JWT}"}}],
            },
        ),
        ai_event(
            team,
            "pii",
            at + timedelta(seconds=2),
            event="$ai_span",
            index=2,
            **{
                "$ai_span_name": "github",
                "$ai_input_state": {"token": GITHUB_TOKEN, "email": EMAIL},
                "$ai_is_error": True,
                "$ai_error": f"AccessDenied for {AWS_KEY}",
            },
        ),
        ai_event(team, "clean", at + timedelta(minutes=1), **{"$ai_input": "nothing personal here"}),
    ]


def run_pipeline(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm: LLMResource, **config: Any
) -> dg.ExecuteInProcessResult:
    store.insert_events(pii_trace(TEAM))
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    clickhouse = ClickHouseResource(dsn=store.dsn)
    result = run_production_job(
        {
            "clickhouse": clickhouse,
            "llm": llm,
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        instance=instance,
        partition_key=KEY,
        assets=SUMMARY_ASSETS,
        config=config,
    )
    assert result.success
    return result


def stored_events(store: TraceStore) -> dict[str, Any]:
    with store.session() as client:
        events = read_summary_events(client, team_id=TEAM, window_start=HOUR, window_end=END)
    return {event.properties.trace_id: event for event in events}


def fake_llm(server: OpenAICompatibleServer) -> LLMResource:
    return LLMResource(api_key=TEST_API_KEY, base_url=server.base_url, timeout_s=5.0)


def test_without_configuration_the_text_reaches_the_llm_unchanged(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    run_pipeline(store, instance, tmp_path, fake_llm(llm_server))

    sent = "\n".join(json.dumps(request.body) for request in llm_server.chat_requests())
    assert EMAIL in sent and CARD in sent and AWS_KEY in sent
    assert all(event.properties.redactions == {} for event in stored_events(store).values())


def test_with_redaction_on_no_pii_reaches_the_llm_and_the_event_counts_it(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    result = run_pipeline(
        store,
        instance,
        tmp_path,
        fake_llm(llm_server),
        redact_pii=True,
        redaction_patterns={"order_id": r"ORD-\d{6}"},
    )

    requests = llm_server.chat_requests()
    # Both traces reached the LLM (a refused or cut-off first answer is asked again: every call counts below).
    assert len({request.message_text("user") for request in requests}) == 2
    sent = "\n".join(json.dumps(request.body, ensure_ascii=False) for request in requests)
    reached = [value for value in PII if value in sent or value.upper() in sent]
    record(
        "security",
        "pii_redaction:llm_requests",
        tried=len(PII),
        survived=len(PII) - len(reached),
        lost=0,
        duplicates=0,
    )
    assert reached == []
    # Counted on the event, per kind (the trace name is in the prompt header and in the text's first line).
    events = stored_events(store)
    assert events["pii"].properties.redactions == {
        "api_key": 3,
        "token": 2,
        "email": 3,
        "card": 1,
        "phone": 1,
        "order_id": 1,
    }
    assert events["clean"].properties.redactions == {}
    stored = json.dumps([event.properties_json() for event in events.values()])
    assert "$ai_summary_redactions" in stored and not [value for value in PII if value in stored]

    # Line numbering is exactly the unredacted rendering's: the model's refs point to the same lines.
    sample: TeamHourSample = result.output_for_node("sampled_traces")[KEY]
    [trace] = [t for t in sample.traces if t.trace_id == "pii"]
    original = render_trace(trace, PIPELINE_RENDERING)
    [prompt] = {r.message_text("user") for r in requests if "[REDACTED:" in r.message_text("user")}
    sent_lines = re.findall(r"^(L\d+): ", prompt, re.MULTILINE)
    assert sent_lines == re.findall(r"^(L\d+): ", original.text, re.MULTILINE)
    cited = [
        int(ref)
        for item in events["pii"].properties.bullets + events["pii"].properties.interesting_notes
        for ref in re.findall(r"L(\d+)", item.line_refs)
    ]
    assert cited and all(number in original.line_map for number in cited)
    # Nothing cited out of range: the only reference dropped is the one an answer without its key has.
    last_shape = [r.shape for r in requests if r.message_text("user") == prompt][-1]
    assert events["pii"].properties.line_refs_invalid == (last_shape == "missing_ref_key")


def test_with_redaction_on_the_offline_summary_shows_no_pii(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    run_pipeline(store, instance, tmp_path, LLMResource(), redact_pii=True)

    event = stored_events(store)["pii"]
    summary = event.properties_json()
    assert not [value for value in PII[:-1] if value in summary]
    assert event.properties.redactions["email"] == 3 and "order_id" not in event.properties.redactions
