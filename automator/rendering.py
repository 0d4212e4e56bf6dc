"""A message's content from its facts: what a template sees, rendered here or, for a big
chunk, on every core.

Rendering is most of the cost of queueing a message (Jinja's sandbox, Babel's formats), and
it needs nothing but the facts and the templates, so a chunk is split over worker processes
while the tick's own process does the SQL. Workers are started with the `spawn` method (a
forked copy of a process holding database connections and threads is not safe) when a daemon
starts, or once a one-shot tick has done enough of their work to pay for their start (see
RenderPool), and kept for the life of the engine.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from automator import emails
from automator.errors import TemplateError
from automator.model import Rule, Variant
from automator.packing import pack
from automator.templates import Rendered, Templates

log = logging.getLogger("automator.rendering")
T = TypeVar("T")
R = TypeVar("R")

POOL_MIN = 64  # fewer messages than this render in the calling process: the hop costs more
# A chunk goes to the workers in slices this big; the slices no worker has taken yet when
# the caller wants the results, the caller renders itself instead of waiting.
SLICE = 32
# `map` sends its items in slices this big: a slice's results come back while the next is
# worked on.
MAP_SLICE = 100
# CPU seconds of work the workers could have taken (renders, email builds) that a pool nobody
# warmed does in the calling process before it starts them. A worker costs its start (spawned,
# it imports automator and loads the templates: a quarter of a second of a core when the
# machine is idle, more when it is busy) and the pickling of its work both ways, and it
# shares the cores with the calling process's threads: less work than this is done sooner,
# and with less CPU, without one. See RenderPool.
WORTH_A_WORKER = 1.0


@dataclass(frozen=True)
class Links:
    """What the links in a message are made of."""

    base_url: str
    secret: str


@dataclass(frozen=True)
class RenderJob:
    """Everything one message's content depends on, as plain values (they cross processes)."""

    template: str
    rule: dict[str, Any]  # id, name
    contact: dict[str, Any]  # its fields (email, first_name, locale…)
    coupon: dict[str, Any] | None  # code, percent_off, expires_at
    occurred_at: datetime
    send_at: datetime
    # The triggering event's properties, for event rules; like `attributes`, a dict or its
    # JSON text as stored: a chunk's rows go to the workers undecoded, and they decode them.
    event: dict[str, Any] | str | None
    zone: str  # dates are shown in this time zone: the contact's, else the project's
    attributes: dict[str, Any] | str = field(default_factory=dict)  # the contact's other fields

    @property
    def locale(self) -> str | None:
        return self.contact.get("locale")


@dataclass(frozen=True)
class Failed:
    """A message whose template failed, with what to tell the person who fixes it."""

    reason: str


@dataclass(frozen=True)
class StoredContent:
    """A message's content as queueing stores it. For SQLite the bodies are packed where
    they were rendered, so a worker sends back a third of the bytes (see
    `automator.packing`); PostgreSQL stores text and compresses it itself, so for it they
    stay text, rather than be packed by the worker and unpacked again by the tick."""

    subject: str
    text: bytes | str
    html: bytes | str


Result = StoredContent | Failed


class ContactFields(Protocol):
    """What rendering needs of a contact: an ORM Contact or a row of the contact table."""

    @property
    def email(self) -> str: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def locale(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def attributes(self) -> dict[str, Any] | str: ...  # a row's may be the JSON text


class CouponFields(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def percent_off(self) -> int | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


class Renderer:
    """Renders jobs with a project's templates; dates in the contact's zone, else `zone`."""

    def __init__(self, templates: Templates, links: Links, zone: str, packs: bool = True) -> None:
        self.templates = templates
        self.links = links
        self.zone = zone
        self.packs = packs  # whether `store_each` packs the bodies (see StoredContent)

    def job(
        self,
        rule: Rule,
        contact: ContactFields,
        coupon: CouponFields | None,
        occurred_at: datetime,
        send_at: datetime,
        event_properties: dict[str, Any] | str | None,
        sending: Variant | None = None,
    ) -> RenderJob:
        """What a message's content depends on, from plain values (the set-wise enqueue has
        rows, not ORM objects). `sending` is what the message sends (its step's, its
        variant's: `Rule.sending`); by default the rule's first step."""
        sending = sending or rule.sending()
        spec = sending.coupon
        return RenderJob(
            template=sending.template,
            rule={"id": rule.id, "name": rule.name or rule.id},
            contact={
                "email": contact.email,
                "first_name": contact.first_name,
                "last_name": contact.last_name,
                "locale": contact.locale,
                "timezone": contact.timezone,
                "stage": contact.stage,
            },
            coupon=None
            if coupon is None
            else {
                "code": coupon.code,
                # A pool code imported without a value offers what the rule says.
                "percent_off": coupon.percent_off
                if coupon.percent_off is not None or spec is None
                else spec.percent_off,
                "expires_at": coupon.expires_at,
            },
            occurred_at=occurred_at,
            send_at=send_at,
            event=event_properties,
            zone=contact.timezone or self.zone,
            attributes=contact.attributes,
        )

    def context(self, job: RenderJob) -> dict[str, Any]:
        """What a template sees: contact, event, coupon, rule, trigger, links."""
        days_left = round((job.occurred_at - job.send_at).total_seconds() / 86400)
        attributes = _decoded(job.attributes)
        context: dict[str, Any] = {
            "contact": {**attributes, **job.contact} if attributes else job.contact,
            "coupon": job.coupon,
            "rule": job.rule,
            "trigger": {"at": job.occurred_at, "days_left": days_left},
            "unsubscribe_url": emails.unsubscribe_url(
                self.links.base_url, self.links.secret, job.contact["email"]
            ),
            "base_url": self.links.base_url.rstrip("/"),
            "now": job.send_at,
        }
        if job.event is not None:
            context["event"] = _decoded(job.event)
        return context

    def render(self, job: RenderJob) -> Rendered:
        """Raises TemplateError naming the template file and line."""
        return self.templates.render(job.template, job.locale, self.context(job), zone=job.zone)

    def render_each(self, jobs: list[RenderJob]) -> list[Rendered | Failed]:
        return [self._render_or_fail(job) for job in jobs]

    def store_each(self, jobs: list[RenderJob]) -> list[Result]:
        """Each job's content as it is stored."""
        return [_stored(result, self.packs) for result in self.render_each(jobs)]

    def _render_or_fail(self, job: RenderJob) -> Rendered | Failed:
        try:
            return self.render(job)
        except TemplateError as exc:
            return Failed(f"template error: {exc}")


def _stored(result: Rendered | Failed, packs: bool) -> Result:
    if isinstance(result, Failed):
        return result
    if not packs:
        return StoredContent(result.subject, result.text, result.html)
    return StoredContent(result.subject, pack(result.text), pack(result.html))


class RenderPool:
    """Renders chunks for storage on `workers` processes (None: one per core but one, the
    caller's; 0: none, all in the calling process). A daemon's tick and dispatch use it from
    their own threads at once: the workers are started, and stopped, under a lock.

    A daemon starts its workers with itself (`warm`). A pool nobody warmed, a one-shot
    `automator tick`'s, starts them only once the caller has done WORTH_A_WORKER of their
    work itself: a tick of a few thousand messages is over sooner without them, a bigger one
    gets them for the rest. Once started, they are handed the work even while they start: a
    render's slices that no worker has taken yet when the caller needs them it renders
    itself (`Rendering.results`), and meanwhile it goes on with its own work."""

    def __init__(self, renderer: Renderer, workers: int | None = None) -> None:
        self.renderer = renderer
        self.workers = (os.cpu_count() or 1) - 1 if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._up: Future[int] | None = None  # with the pool: the job done once a worker is up
        self._worked_here = 0.0  # CPU seconds of the workers' kind of work done by the callers
        self._starting = threading.Lock()

    def store_each(self, jobs: list[RenderJob]) -> list[Result]:
        return self.start(jobs).results()

    def start(self, jobs: list[RenderJob]) -> Rendering:
        """Start rendering; the caller collects the results when it needs them."""
        pool = self._ready(len(jobs))
        if pool is None:
            return Rendering(self, jobs, done=self._here(self.renderer.store_each, jobs))
        slices = [jobs[start : start + SLICE] for start in range(0, len(jobs), SLICE)]
        try:
            parts = [(part, pool.submit(_render_slice, part)) for part in slices]
        except BrokenProcessPool:
            return Rendering(self, jobs, done=self.fall_back(jobs))
        return Rendering(self, jobs, parts=parts)

    def map(self, function: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """`function` over `items` in slices, on the workers (a top-level function, or a
        `partial` of one, with arguments that pickle), the results in order: other per-message
        work that needs no database, such as building the emails a claim sends, runs on
        their cores too. Few items, or workers not started, run here; a worker that dies
        leaves the rest to this process, as a render does."""
        pool = self._ready(len(items))
        if pool is None:
            return self._here(function, items)
        slices = [items[start : start + MAP_SLICE] for start in range(0, len(items), MAP_SLICE)]
        try:
            parts = [pool.submit(function, part) for part in slices]
            return [result for part in parts for result in part.result()]
        except BrokenProcessPool:
            return self._here_from_now_on(function, items)

    def warm(self) -> Future[int] | None:
        """Start the workers now rather than when the work done here has come to
        WORTH_A_WORKER (they start on their own cores: the caller goes on meanwhile); returns
        a job that is done once a worker is up (None without workers)."""
        if self.workers < 1:
            return None
        with self._starting:
            return self._start()  # a pool never stays broken: fall_back closes it

    def fall_back(self, jobs: list[RenderJob]) -> list[Result]:
        """A worker died: render these, and every later chunk, in this process."""
        return self._here_from_now_on(self.renderer.store_each, jobs)

    def _here_from_now_on(self, function: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """A worker died: `function` over these items, and all later work, in this process."""
        log.exception("a render worker died; working in this process from now on")
        self.close()
        self.workers = 0
        return function(items)

    def close(self) -> None:
        with self._starting:
            pool, self._pool, self._up = self._pool, None, None
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    def _ready(self, items: int) -> ProcessPoolExecutor | None:
        """The pool, if these items are worth handing to it and its workers are started;
        None when the caller does them itself (the workers are started once that has come to
        WORTH_A_WORKER)."""
        if self.workers < 1 or items < POOL_MIN:
            return None
        with self._starting:
            if self._pool is None and self._worked_here >= WORTH_A_WORKER:
                self._start()
            return self._pool

    def _here(self, function: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """`function` over `items` in this thread, its CPU time counted if the workers could
        have done it."""
        started = time.thread_time()
        try:
            return function(items)
        finally:
            if len(items) >= POOL_MIN:
                with self._starting:
                    self._worked_here += time.thread_time() - started

    def _start(self) -> Future[int]:
        """Start the workers, under the lock, unless they are; the job done once one is up."""
        if self._up is None:
            templates, links = self.renderer.templates, self.renderer.links
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(str(templates.root), templates.timezone, links, self.renderer.packs),
            )
            self._up = self._pool.submit(int)
        return self._up


class Rendering:
    """A chunk's rendering, started: done already, or running on the workers."""

    def __init__(
        self,
        pool: RenderPool,
        jobs: list[RenderJob],
        done: list[Result] | None = None,
        parts: list[tuple[list[RenderJob], Future[list[Result]]]] | None = None,
    ) -> None:
        self._pool, self._jobs, self._done, self._parts = pool, jobs, done, parts or []
        self.stolen = 0  # slices the caller rendered itself (no worker had taken them)

    def results(self) -> list[Result]:
        """One result per job, in order. The slices no worker has started yet are rendered
        here, from the last one back, while the workers go on from the first: the caller's
        process renders instead of waiting."""
        if self._done is None:
            here: dict[int, list[Result]] = {}
            for index in range(len(self._parts) - 1, -1, -1):
                part, future = self._parts[index]
                if not future.cancel():
                    break  # a worker has it, and so every slice before it
                here[index] = self._pool.renderer.store_each(part)
            self.stolen = len(here)
            try:
                self._done = [
                    result
                    for index, (_, future) in enumerate(self._parts)
                    for result in (here[index] if index in here else future.result())
                ]
            except BrokenProcessPool:
                self._done = self._pool.fall_back(self._jobs)
        return self._done


def _decoded(value: dict[str, Any] | str | None) -> dict[str, Any]:
    """A JSON column's value: decoded already (the ORM, PostgreSQL's driver) or its text."""
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else value


_worker: Renderer | None = None  # the renderer of a worker process


def _start_worker(root: str, timezone: str, links: Links, packs: bool) -> None:
    global _worker
    _worker = Renderer(Templates(Path(root), timezone), links, timezone, packs)
    threading.Thread(target=_exit_with_parent, name="automator-render-parent", daemon=True).start()


def _exit_with_parent() -> None:
    """A worker outlives a parent killed outright (SIGKILL, the OOM killer): it holds its
    own end of the task queue, so it would wait on it forever. It leaves when the parent
    is gone instead."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


def _render_slice(jobs: list[RenderJob]) -> list[Result]:
    assert _worker is not None, "not a render worker"
    return _worker.store_each(jobs)
