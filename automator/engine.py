"""The engine: evaluate rules into queued messages, then deliver what is due.

`tick(now)` is the heartbeat the CLI and the daemon call. Every step takes `now` from its
caller; nothing here reads the clock.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from automator.clock import Clock, utcnow
from automator.dispatch import Dispatcher
from automator.enqueue import priority
from automator.lookup import NewestIds, look_up_each
from automator.lookup import lookups as lookups_of
from automator.memory import collecting_young_objects_only, use_few_arenas
from automator.pipeline import Pipeline, Queueing
from automator.project import Project
from automator.rendering import Links, Renderer, RenderPool
from automator.reports import TickReport
from automator.store import Store, changes, messages
from automator.transports import Transport

log = logging.getLogger("automator.engine")


class Engine:
    """Evaluates a project's rules against a store and delivers through a transport."""

    def __init__(self, project: Project, store: Store, transport: Transport) -> None:
        use_few_arenas()  # before its threads start: see automator.memory
        self.project = project
        self.settings = project.settings
        self.store = store
        self.transport = transport
        links = Links(self.settings.base_url, self.settings.secret)
        packs = store.engine.dialect.name == "sqlite"  # see rendering.StoredContent
        self.renderer = Renderer(project.templates, links, self.settings.timezone, packs)
        self.render_pool = RenderPool(self.renderer, self.settings.render_workers)

    def dispatcher(self, kind: str = "tick", clock: Clock = utcnow) -> Dispatcher:
        """A dispatcher delivering through this engine's transport; `kind` names its claims."""
        return Dispatcher(self.store, self.project, self.render_pool, self.transport, kind, clock)

    def close(self) -> None:
        """Stop the render workers, if any were started."""
        self.render_pool.close()

    async def tick(self, now: datetime) -> TickReport:
        """Evaluate every rule, then deliver every due message."""
        report = TickReport(now)
        self.evaluate(now, report)
        await self.dispatcher().run(now, report)
        with self.store.session() as session:
            for rule in self.project.ruleset.rules:
                report.rule(rule.id).waiting = messages.waiting(session, rule.id, now)
        return report

    def evaluate(self, now: datetime, report: TickReport, stop: threading.Event | None = None) -> None:
        """Enqueue every due occurrence of every rule, the highest priority first; a failing
        rule is reported and skipped.

        The rules' candidates are looked up in threads of their own (`Store.lookup_lanes`,
        each taking the rules in turn) while the tick's thread queues them, in priority order,
        as they are found: SQLite reads from its own snapshot without blocking the writer, and
        the lookups' SQL runs without the GIL.

        `stop`, once set, ends the tick before its next chunk with `pipeline.Stopped`."""
        with self.store.evaluating(), collecting_young_objects_only():
            self._evaluate(now, report, stop)
            self._forget_seen_changes()

    def _evaluate(self, now: datetime, report: TickReport, stop: threading.Event | None) -> None:
        for rule in self.project.rules:
            report.rule(rule.id)  # the summary lists the rules in the project's order
        rules = sorted(self.project.rules, key=lambda rule: -priority(self.settings, rule))
        # Each rule's trigger, then its journey's later steps, at the rule's priority.
        work = [(rule, lookup) for rule in rules for lookup in lookups_of(rule)]
        lanes = min(self.store.lookup_lanes, len(work)) or 1
        newest = NewestIds(self.store)
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="automator-lookup") as finder:
            for lane in range(lanes):  # each lane's first lookups are the highest in priority
                finder.submit(look_up_each, self.store, self.settings.zone, work[lane::lanes], now, newest)
            pipeline = Pipeline(self.store, self.render_pool, self.settings, now, stop)
            try:
                for rule, lookup in work:
                    pipeline.queue(Queueing(rule, lookup, report.rule(rule.id)))
                pipeline.finish()
            finally:
                pipeline.writes.close()  # a tick stopped midway: what is not committed is undone
                for _, lookup in work:  # a tick stopped midway stops the lookups too
                    lookup.abandon()

    def _forget_seen_changes(self) -> None:
        """Prune the contact change log of what every rule has looked at, so that it stays
        the size of a few ticks' changes. A failure costs nothing but the log's size: the
        next tick prunes it."""
        try:
            with self.store.session() as session:
                changes.prune(session, [rule.id for rule in self.project.rules])
        except Exception:
            log.warning("the contact change log could not be pruned", exc_info=True)
