"""Model names and the token cut: what the embeddings API is asked for, and how long an input may be."""

from __future__ import annotations

import pytest

from trace_summaries.worker.embedding_model import EmbeddingModel, UnknownEmbeddingModel
from trace_summaries.worker.token_limit import cut_to_byte_limit, cut_to_token_limit, estimate_tokens


@pytest.mark.parametrize(
    ("name", "api_model", "dimensions"),
    [
        ("text-embedding-3-large-3072", "text-embedding-3-large", 3072),
        ("text-embedding-3-small-1536", "text-embedding-3-small", 1536),
        ("text-embedding-3-small-256", "text-embedding-3-small", 256),
        ("text-embedding-ada-002", "text-embedding-ada-002", None),
        ("nomic-embed-text", "nomic-embed-text", None),
    ],
)
def test_the_size_suffix_becomes_the_dimensions_parameter(
    name: str, api_model: str, dimensions: int | None
) -> None:
    model = EmbeddingModel.parse(name)
    assert (model.name, model.api_model, model.dimensions) == (name, api_model, dimensions)
    assert model.max_input_tokens == 8191


@pytest.mark.parametrize("name", ["", "  ", "text-embedding-3-large-0"])
def test_unusable_model_names_are_refused(name: str) -> None:
    with pytest.raises(UnknownEmbeddingModel):
        EmbeddingModel.parse(name)


def test_short_text_is_left_alone() -> None:
    text = "Title: checkout flow\n\nSummary:\n- the agent called the payments tool twice"
    assert cut_to_token_limit(text, 8191) == text


def test_long_english_text_is_cut_below_the_limit_but_not_far_below() -> None:
    text = "the agent retried the search tool " * 2000  # ~68k chars, ~14k real tokens
    cut = cut_to_token_limit(text, 8191)
    assert text.startswith(cut)
    assert estimate_tokens(cut) <= 8191
    # Over-counting at 1/3 token per letter keeps ~24k chars: generous, yet well within the real limit.
    assert 20_000 < len(cut) < 26_000


def test_non_ascii_text_counts_bytes_so_it_can_only_over_count() -> None:
    text = "检索工具重试" * 3000
    cut = cut_to_token_limit(text, 8191)
    assert len(cut.encode()) <= 8191
    assert text.startswith(cut)


def test_byte_cut_never_splits_a_character() -> None:
    assert cut_to_byte_limit("aé€😀", 5) == "aé"  # 1 + 2 bytes fit; the 3-byte euro does not
    assert cut_to_byte_limit("aé€😀", 9) == "aé€"
    assert cut_to_byte_limit("abc", 10) == "abc"
