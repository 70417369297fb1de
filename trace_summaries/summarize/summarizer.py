"""What every summarizer offers, and which one a configuration gets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from trace_summaries.summarize.endpoint import LLMSettings
from trace_summaries.summarize.heuristic import HeuristicSummarizer
from trace_summaries.summarize.llm import LLMSummarizer
from trace_summaries.summarize.modes import SummaryMode
from trace_summaries.summarize.result import Provider, TraceSummaryResult

if TYPE_CHECKING:
    from trace_summaries.text_repr import TraceText


class Summarizer(Protocol):
    """Turns one rendered trace into a ``TraceSummaryResult``; failures are results, never exceptions."""

    @property
    def provider(self) -> Provider: ...

    @property
    def model(self) -> str: ...

    async def summarize(
        self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
    ) -> TraceSummaryResult: ...

    async def aclose(self) -> None:
        """Releases what the summarizer holds for the running event loop (pooled connections)."""


def select_provider(settings: LLMSettings) -> Provider:
    """``openai`` as soon as an endpoint is configured (a key, or a base URL for a local server)."""
    return "openai" if settings.has_endpoint else "heuristic"


def make_summarizer(settings: LLMSettings) -> LLMSummarizer | HeuristicSummarizer:
    """The summarizer for these settings: the LLM when an endpoint is configured, else the offline one."""
    if select_provider(settings) == "openai":
        return LLMSummarizer(settings)
    return HeuristicSummarizer()
