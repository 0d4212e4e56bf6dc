"""The plan: what changing a rule set would change, as Terraform's `plan` shows for
infrastructure. Both rule sets are simulated over the same period on copies of the same
store, and their sends compared by rule, contact and occurrence.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from automator.errors import AutomatorError
from automator.project import Project, load_project
from automator.store.forecasts import Sent

EXAMPLES = 3  # example contacts shown per rule and kind of change


class PlanInputError(AutomatorError):
    """A rule set to compare cannot be had: a missing folder, a bad git revision, rules
    that do not load."""


@dataclass
class RuleChanges:
    """For one rule: the contacts that would newly get a message, would no longer get
    one, or would get it at another time."""

    rule: str
    newly: set[str] = field(default_factory=set)
    no_longer: set[str] = field(default_factory=set)
    moved: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, **{kind: self.summary(kind) for kind in ("newly", "no_longer", "moved")}}

    def summary(self, kind: str) -> dict[str, Any]:
        contacts: set[str] = getattr(self, kind)
        return {"contacts": len(contacts), "examples": sorted(contacts)[:EXAMPLES]}

    @property
    def changed(self) -> bool:
        return bool(self.newly or self.no_longer or self.moved)


def compare(before: list[Sent], after: list[Sent], rules: Iterable[str] = ()) -> list[RuleChanges]:
    """Per rule (those named, and any that sent in either set), what `after`'s sends change
    from `before`'s.

    A contact's message of the same occurrence in both is the same message (moved when its
    send time differs). What is left of a contact's messages of a rule on each side is paired
    in time order, as messages moved: a schedule at another hour fires other occurrences,
    and its contacts get their message at another time, not a new one and no longer the
    old one. Only what is left after that is new or gone."""
    was: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
    now: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
    for side, sent in ((was, before), (now, after)):
        for rule, email, occurrence, at in sent:
            side[(rule, email)][occurrence] = at
    changes = {rule: RuleChanges(rule) for rule in rules}
    for key in was.keys() | now.keys():
        rule, email = key
        change = changes.setdefault(rule, RuleChanges(rule))
        old, new = was.get(key, {}), now.get(key, {})
        if any(old[occurrence] != new[occurrence] for occurrence in old.keys() & new.keys()):
            change.moved.add(email)
        left_old = sorted(old[occurrence] for occurrence in old.keys() - new.keys())
        left_new = sorted(new[occurrence] for occurrence in new.keys() - old.keys())
        paired = min(len(left_old), len(left_new))
        if paired:
            change.moved.add(email)
        if len(left_new) > paired:
            change.newly.add(email)
        if len(left_old) > paired:
            change.no_longer.add(email)
    return [changes[rule] for rule in sorted(changes)]


def rules_from(project: Project, folder: Path, shown: str) -> Project:
    """`project` with the rules of another folder (its templates and settings stay)."""
    if not folder.is_dir():
        raise PlanInputError(f"{shown}: no such folder of rules")
    with TemporaryDirectory(prefix="automator-plan-") as place:
        root = Path(place)
        (root / "rules").symlink_to(folder.resolve(), target_is_directory=True)
        (root / "email_templates").symlink_to(project.settings.templates_dir.resolve())
        other = load_project(root)
    if other.errors:
        first = str(other.errors[0]).replace("rules/", f"{shown}/", 1)
        more = f" (and {len(other.errors) - 1} more; see automator check)" if len(other.errors) > 1 else ""
        raise PlanInputError(f"the rules in {shown} do not load: {first}{more}")
    return replace(other, settings=project.settings)


@contextmanager
def rules_at_revision(project_dir: Path, revision: str) -> Iterator[Path]:
    """The rules/ folder as it is at a git revision, in a temporary folder."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(project_dir), "archive", "--format=tar", f"{revision}:./rules"],
            capture_output=True,
            check=False,
        )
    except OSError as exc:
        raise PlanInputError(f"--against {revision}: git cannot be run ({exc})") from exc
    if archive.returncode != 0:
        why = archive.stderr.decode(errors="replace").strip().splitlines()
        raise PlanInputError(f"--against {revision}: {why[-1] if why else 'git archive failed'}")
    with TemporaryDirectory(prefix="automator-rules-") as place:
        folder = Path(place) / "rules"
        folder.mkdir()
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        yield folder
