"""`automator schema`: the JSON Schema of a rule file, for editors that complete and check
rules as they are typed (docs/rules.md says how to point VS Code at it)."""

from __future__ import annotations

import typer

from automator.cli.output import reports_errors
from automator.cli.state import state


@reports_errors
def schema_command() -> None:
    """Print the JSON Schema of a rule file, with this project's stages."""
    import json

    from automator.config import load_settings
    from automator.journey import load_journey
    from automator.rule_schema import rule_schema

    directory = state().directory
    journey = load_journey(load_settings(directory).rules_dir, directory)
    typer.echo(json.dumps(rule_schema(journey.stages), indent=2, ensure_ascii=False))
