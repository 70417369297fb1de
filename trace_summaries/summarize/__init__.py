"""Trace text in, structured summary out: the LLM summarizer, the offline one, and running them in batches.

``text_repr`` renders a trace as numbered lines; this package turns those lines into a
``SummarizationResponse`` whose line references are checked against the text, and reports every trace as a
``TraceSummaryResult`` (generated or failed with a reason), never as an exception.
"""

from trace_summaries.summarize.batch import (
    ProgressCallback,
    summarize_prepared,
    systemic_failure_reason,
)
from trace_summaries.summarize.endpoint import LLMSettings
from trace_summaries.summarize.heuristic import HEURISTIC_VERSION, HeuristicSummarizer, summarize_extractively
from trace_summaries.summarize.leakage import PromptLeak, find_prompt_leaks, leakage_warnings
from trace_summaries.summarize.line_refs import CheckedRefs, check_line_refs, check_summary_refs
from trace_summaries.summarize.llm import LLMSummarizer
from trace_summaries.summarize.modes import (
    MODE_RULES,
    SUMMARY_MODES,
    ModeRules,
    SummaryMode,
)
from trace_summaries.summarize.pricing import DEFAULT_PRICES, ModelPrice, estimate_cost_usd
from trace_summaries.summarize.prompts import PROMPT_VERSION, chat_messages
from trace_summaries.summarize.result import (
    FAILURE_REASONS,
    SYSTEMIC_REASONS,
    FailureReason,
    Provider,
    TraceSummaryResult,
)
from trace_summaries.summarize.retry import RetryPolicy
from trace_summaries.summarize.schema import SummarizationResponse, SummaryItem, response_format
from trace_summaries.summarize.summarizer import Summarizer, make_summarizer, select_provider

__all__ = [
    "DEFAULT_PRICES",
    "FAILURE_REASONS",
    "HEURISTIC_VERSION",
    "MODE_RULES",
    "PROMPT_VERSION",
    "SUMMARY_MODES",
    "SYSTEMIC_REASONS",
    "CheckedRefs",
    "FailureReason",
    "HeuristicSummarizer",
    "LLMSettings",
    "LLMSummarizer",
    "ModeRules",
    "ModelPrice",
    "ProgressCallback",
    "PromptLeak",
    "Provider",
    "RetryPolicy",
    "SummarizationResponse",
    "Summarizer",
    "SummaryItem",
    "SummaryMode",
    "TraceSummaryResult",
    "chat_messages",
    "check_line_refs",
    "check_summary_refs",
    "estimate_cost_usd",
    "find_prompt_leaks",
    "leakage_warnings",
    "make_summarizer",
    "response_format",
    "select_provider",
    "summarize_extractively",
    "summarize_prepared",
    "systemic_failure_reason",
]
