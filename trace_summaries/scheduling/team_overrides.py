"""Per-team parameters of scheduled runs, from the file named by TRACE_SUMMARIES_TEAM_OVERRIDES.

The file (YAML, or JSON: a ``.json`` name) maps team ids to what differs for that team from the
deployment-wide settings (TRACE_SUMMARIES_MAX_TRACES, TRACE_SUMMARIES_SUMMARY_MODES,
TRACE_SUMMARIES_LLM_MODEL)::

    12:
      max_traces: 500
      modes: [minimal, detailed]
    "40":
      model: gpt-4.1-mini

It is validated as a whole when the code location loads (``defs/schedules.py``) and again at each tick (an
edited file takes effect at the next tick); every problem raises ``SettingError`` naming the variable, the
file and the team.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trace_summaries.config import SettingError, SummaryMode, parse_summary_modes

VARIABLE = "TRACE_SUMMARIES_TEAM_OVERRIDES"


class TeamOverride(BaseModel):
    """What one team's scheduled runs use instead of the deployment-wide settings (None: the setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_traces: int | None = Field(default=None, ge=1, le=100_000)
    modes: tuple[SummaryMode, ...] | None = None
    model: str | None = None

    @field_validator("modes", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            value = ",".join(str(mode) for mode in value)
        if isinstance(value, str):
            return parse_summary_modes(value)
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty: leave it out for TRACE_SUMMARIES_LLM_MODEL")
        return value.strip() if value is not None else None


def _team_key(key: object) -> str | None:
    """A team id as its partition key, or None when ``key`` is not a positive integer id."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return str(key) if key > 0 else None
    text = str(key).strip()
    if text.isascii() and text.isdigit() and int(text) > 0:
        return str(int(text))
    return None


def parse_team_overrides(document: object, source: str) -> dict[str, TeamOverride]:
    """Overrides by team partition key from a parsed document; ``source`` names the file in errors."""
    where = f"{VARIABLE} ({source})"
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise SettingError(
            f"{where}: expected a mapping of team id to overrides, got {type(document).__name__}"
        )
    overrides: dict[str, TeamOverride] = {}
    for raw_key, raw_value in document.items():
        team = _team_key(raw_key)
        if team is None:
            raise SettingError(f"{where}: team {raw_key!r} is not a team id (a positive integer)")
        if team in overrides:
            raise SettingError(f"{where}: team {team} is listed twice")
        if not isinstance(raw_value, Mapping):
            raise SettingError(
                f"{where}: team {team}: expected a mapping of max_traces, modes, model; got "
                f"{type(raw_value).__name__}"
            )
        try:
            overrides[team] = TeamOverride.model_validate(dict(raw_value))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in detail['loc']) or 'value'}: "
                f"{str(detail['msg']).removeprefix('Value error, ')}"
                for detail in error.errors(include_url=False)
            )
            raise SettingError(f"{where}: team {team}: {problems}") from None
    return overrides


def load_team_overrides(path: Path | None) -> dict[str, TeamOverride]:
    """The overrides of the file at ``path`` (None: no overrides); raises ``SettingError`` naming the team."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"{VARIABLE} ({path}): cannot be read ({exc})") from None
    is_json = path.suffix.lower() == ".json"
    try:
        document = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SettingError(f"{VARIABLE} ({path}): not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
    return parse_team_overrides(document, str(path))
