"""A sample's JSON-lines file as bytes, whole: what tests compare (the pipeline streams it line by line)."""

from __future__ import annotations

from trace_summaries.sample import TeamHourSample


def sample_to_jsonl(sample: TeamHourSample) -> bytes:
    return b"".join(sample.iter_jsonl())


def sample_from_jsonl(data: bytes) -> TeamHourSample:
    return TeamHourSample.read_jsonl(data.split(b"\n"))
