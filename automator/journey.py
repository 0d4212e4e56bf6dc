"""The customer journey: ordered stages and the events that move contacts between them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from automator.errors import RuleError
from automator.model import DEFAULT_STAGES, Identifier
from automator.yamlfile import load_yaml


class _JourneyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[Identifier] = Field(default=list(DEFAULT_STAGES), min_length=1)
    moves: dict[Identifier, Identifier] = {}

    @field_validator("stages")
    @classmethod
    def _distinct(cls, stages: list[str]) -> list[str]:
        """A field's check, so that it is made (and told) beside a mistake in `moves`."""
        if len(set(stages)) != len(stages):
            raise ValueError("a stage is listed twice")
        return stages


@dataclass(frozen=True)
class Journey:
    """Stages in order; `moves` maps an event type to the stage it moves a contact to."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    moves: dict[str, str] = field(default_factory=dict)

    @property
    def first_stage(self) -> str:
        return self.stages[0]

    def rank(self, stage: str | None) -> int:
        return self.stages.index(stage) if stage in self.stages else -1

    def move_for(self, event_type: str, current: str | None) -> str | None:
        """The stage an event moves a contact to, or None; events only move contacts forward."""
        target = self.moves.get(event_type)
        if target is None or self.rank(target) <= self.rank(current):
            return None
        return target


def load_journey(rules_dir: Path, display_root: Path) -> Journey:
    """Read rules/journey.yaml (optional). Raises RuleError naming file and line."""
    journey, problems = read_journey(rules_dir, display_root)
    if problems:
        raise problems[0]
    return journey or Journey()


def read_journey(rules_dir: Path, display_root: Path) -> tuple[Journey | None, list[RuleError]]:
    """rules/journey.yaml (optional) and every problem in it; the journey is None when its
    stages cannot be read, so that rule files are not told their stages are unknown."""
    path = rules_dir / "journey.yaml"
    if not path.exists() and (rules_dir / "journey.yml").exists():
        path = rules_dir / "journey.yml"
    if not path.exists():
        return Journey(), []
    shown = str(path.relative_to(display_root)) if path.is_relative_to(display_root) else str(path)
    try:
        data, lines = load_yaml(path)
    except OSError as exc:
        return None, [RuleError(shown, None, None, f"cannot be read: {exc.strerror}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        message = f"not valid YAML: {getattr(exc, 'problem', exc)}"
        return None, [RuleError(shown, mark.line + 1 if mark else None, None, message)]
    try:
        parsed = _JourneyFile.model_validate(data or {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field (a journey has stages and moves)"
            message = message.replace("Input should be", "must be", 1)
            problems.append(RuleError(shown, lines.get(where, 1), where or None, message))
        stages = data.get("stages") if isinstance(data, dict) else None
        moves = data.get("moves") if isinstance(data, dict) else None
        if isinstance(stages, list) and isinstance(moves, dict):  # what else can be told
            named = [stage for stage in stages if isinstance(stage, str)]
            valid = {event: stage for event, stage in moves.items() if isinstance(stage, str)}
            problems += _unknown_stages(valid, named, shown, lines)
        usable = isinstance(stages, list) and all(problem.field != "stages" for problem in problems)
        usable = usable and not any(str(problem.field).startswith("stages.") for problem in problems)
        return (Journey(stages=tuple(stages)) if usable and stages else None), problems
    problems = _unknown_stages(parsed.moves, parsed.stages, shown, lines)
    return Journey(stages=tuple(parsed.stages), moves=dict(parsed.moves)), problems


def _unknown_stages(
    moves: dict[str, str], stages: list[str], shown: str, lines: dict[str, int]
) -> list[RuleError]:
    """A problem for each move to a stage the journey does not have."""
    problems = []
    for event, stage in moves.items():
        if stage not in stages:
            close = difflib.get_close_matches(stage, stages, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; stages are {', '.join(stages)}"
            problems.append(
                RuleError(
                    shown, lines.get(f"moves.{event}"), f"moves.{event}", f"unknown stage '{stage}'{hint}"
                )
            )
    return problems
