"""WatchFlows' change feed: resume tokens, reading the change table, and one feed per process.

The database is the source of truth: triggers on `flow` write every change
into `flowservice_flow_change` in the writer's transaction
(`db.changefeed_schema` explains them and why their `seq` order is commit
order). This module only reads that table.

One `ChangeFeed` per server process learns of new changes and fans them out
to that process's watchers:

* SQLite: a task reads the rows after the last one it saw every
  `--watch-poll-interval` (50 ms): one primary-key range read, and none at
  all while the process has no watcher. Every process of `--workers N` (and
  every server on the file) polls for itself.
* PostgreSQL: a dedicated connection LISTENs on `flowservice_flow_change`
  (the trigger NOTIFYs at commit) and wakes the same read; a read every
  `--watch-safety-poll-interval` (1 s) anyway, and every poll interval while
  the listening connection is down, so a missed notification delays a
  change but never loses it.
* PostgreSQL behind a pooler in transaction mode (`--database-pooler`): no
  LISTEN, which needs a session of its own that a pooler does not keep; the
  feed polls as on SQLite, one primary-key range read per poll interval per
  process, and only while the process has a watcher. A direct connection
  around the pooler would give the pooler's connection limit a hole.

The rows read are kept in a bounded ring (the most recent `RING_SIZE`), from
which watchers without a filter take their events with no query. A watcher
with a filter, or one behind the ring, reads the change table itself with
its filter compiled exactly as ReadFlows compiles it (on the change row's
copy of the flow's columns).

Backpressure: a watcher reads its next changes only after gRPC has taken
the previous responses (an async generator is resumed when its last yield
was written, within HTTP/2 flow control). A slow watcher therefore holds at
most one batch in the server's memory and simply falls behind: it reads on
from the table at its own pace, and if retention prunes past its position
its call ends with RESUME_TOKEN_EXPIRED. Nothing is buffered per watcher and
no watcher is dropped for being slow.

Resume tokens are base64url (no padding) of: a version byte, the feed's id
(16 bytes; see `flowservice_flow_change_state`), the position (`seq`, 8
bytes) and a 4-byte BLAKE2b check of the rest. They are not secret and not
signed; the check only tells a damaged token from a valid one.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import hashlib
import logging
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from flowservice.v1 import flow_service_pb2
from flowservice_server.convert import fill_flow
from flowservice_server.db import changefeed_schema as schema
from flowservice_server.db.tables import flow
from flowservice_server.db.types import JSON, UUID, Timestamp
from flowservice_server.errors import (
    ChangeFeedDisabledError,
    ResumeTokenExpiredError,
    TooManyWatchersError,
    WatchEndedError,
)
from flowservice_server.models.flows import response_columns

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from flowservice_server.config import Settings, WatchSettings
    from flowservice_server.db.engine import Database
    from flowservice_server.models.flows import Clause
    from flowservice_server.observability import Metrics
    from flowservice_server.validate import WatchQuery

log = logging.getLogger(__name__)

#: Changes kept in memory per process for watchers without a filter.
RING_SIZE = 20_000
#: Changes one read takes from the table.
READ_BATCH = 500
#: Seconds a watcher's read of the table may take.
READ_TIMEOUT = 30.0


# --- the tables, as the queries see them ---------------------------------------------

_metadata = sa.MetaData()

change = sa.Table(
    schema.CHANGE_TABLE,
    _metadata,
    sa.Column("seq", sa.BigInteger(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("id", UUID(), nullable=False),
    sa.Column("created", Timestamp(), nullable=False),
    sa.Column("updated", Timestamp(), nullable=False),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("tags", JSON(), nullable=False),
    sa.Column("labels", JSON(), nullable=True),
    sa.Column("changed_at", sa.Float(), nullable=False),
)

state = sa.Table(
    schema.STATE_TABLE,
    _metadata,
    sa.Column("singleton", sa.Integer(), primary_key=True),
    sa.Column("feed_id", sa.String(), nullable=False),
    sa.Column("pruned_through", sa.BigInteger(), nullable=False),
)

#: A change row: seq, kind, changed_at, then the flow's columns in `convert`'s order
#: (id, created and updated as the driver returns them, as `models.flows` reads them).
_CHANGE_COLUMNS = (change.c.seq, change.c.kind, change.c.changed_at, *response_columns(change))
_FLOW_COLUMNS = response_columns(flow)


def on_change_rows(condition: Clause) -> Clause:
    """A FlowFilter condition on `flow`, applied to the change rows' copy of its columns."""

    def replace(element: Any, **_: Any) -> Any:
        if isinstance(element, sa.Column) and element.table is flow:
            return change.c[element.name]
        return None

    replaced: Clause = visitors.replacement_traverse(condition, {}, replace)
    return replaced


# --- resume tokens ---------------------------------------------------------------------

_TOKEN_VERSION = 1
_TOKEN_LAYOUT = struct.Struct(">B16sQ")
_CHECK_SIZE = 4


@dataclass(frozen=True)
class ResumePosition:
    """What a resume token says: the feed it belongs to and the last change delivered."""

    feed_id: str  # 32 hex digits
    seq: int


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_CHECK_SIZE, person=b"flowsvc-watch").digest()


def encode_resume_token(feed_id: str, seq: int) -> str:
    body = _TOKEN_LAYOUT.pack(_TOKEN_VERSION, bytes.fromhex(feed_id), seq)
    return base64.urlsafe_b64encode(body + _check(body)).rstrip(b"=").decode()


def decode_resume_token(token: str) -> ResumePosition:
    """The token's position; ValueError (saying what is wrong) for a damaged one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise ValueError("is not a resume token (not base64url)") from None
    if len(raw) != _TOKEN_LAYOUT.size + _CHECK_SIZE:
        raise ValueError("is not a resume token (wrong length)")
    body, check = raw[: _TOKEN_LAYOUT.size], raw[_TOKEN_LAYOUT.size :]
    if _check(body) != check:
        raise ValueError("is damaged (its check does not match)")
    version, feed_id, seq = _TOKEN_LAYOUT.unpack(body)
    if version != _TOKEN_VERSION:
        raise ValueError(f"has version {version}, which this server does not read")
    return ResumePosition(feed_id.hex(), seq)


# --- model functions: reads and pruning, as functions of a connection -----------------


@dataclass(frozen=True)
class FeedInfo:
    installed: bool
    feed_id: str = ""
    pruned_through: int = 0
    #: The last change committed (or, with none left, the last pruned).
    last_seq: int = 0


def _last_seq() -> sa.ScalarSelect[Any]:
    newest = sa.select(sa.func.max(change.c.seq)).scalar_subquery()
    return sa.select(sa.func.coalesce(newest, state.c.pruned_through)).scalar_subquery()


def feed_info(connection: sa.Connection) -> FeedInfo:
    if not schema.is_installed(connection):
        return FeedInfo(installed=False)
    row = connection.execute(
        sa.select(state.c.feed_id, state.c.pruned_through, _last_seq().label("last"))
    ).one()
    return FeedInfo(True, row.feed_id, row.pruned_through, row.last)


def initial_state(connection: sa.Connection, flows: Clause | None) -> tuple[int, list[sa.Row[Any]]]:
    """The position of the changes and the matching flows (by name), from one statement.

    One statement reads both from one snapshot on either database, so the
    changes after the position are exactly those the flows do not show yet:
    no gap, no duplicate. The whole list is read at once (a server-side
    cursor would need a transaction held open while a slow client reads).
    """
    position = sa.select(_last_seq().label("position")).subquery()
    join_on: list[Clause] = [sa.true()]
    if flows is not None:
        join_on.append(flows)
    query = (
        sa.select(position.c.position, *_FLOW_COLUMNS)
        .select_from(position.outerjoin(flow, sa.and_(*join_on)))
        .order_by(flow.c.name)
    )
    rows = connection.execute(query).all()
    return int(rows[0].position), [row for row in rows if row.id is not None]


def read_changes(
    connection: sa.Connection,
    *,
    after: int,
    upto: int | None,
    where: Clause | None,
    limit: int,
) -> tuple[list[sa.Row[Any]], int]:
    """Changes after `after` (to `upto`), in order, and `pruned_through` read after them.

    The caller compares that `pruned_through` with `after`: read after the
    rows, it is at least what any pruning that took rows from under this read
    wrote, so a watcher is told its history is gone rather than skip it.
    """
    conditions: list[Clause] = [change.c.seq > after]
    if upto is not None:
        conditions.append(change.c.seq <= upto)
    if where is not None:
        conditions.append(where)
    query = sa.select(*_CHANGE_COLUMNS).where(*conditions).order_by(change.c.seq).limit(limit)
    rows = list(connection.execute(query).all())
    pruned_through = connection.execute(sa.select(state.c.pruned_through)).scalar_one()
    return rows, int(pruned_through)


def prune(
    connection: sa.Connection, *, older_than: float | None, keep: int | None, batch: int
) -> int:
    """Delete up to `batch` of the oldest changes past retention; how many were deleted.

    Past retention: changed before `older_than` (epoch seconds), or not among
    the newest `keep`. The newest change is always kept, so that SQLite never
    hands out its number again. `pruned_through` moves up in the same
    transaction.
    """
    if not schema.is_installed(connection):
        return 0
    boundaries: list[int] = []
    if older_than is not None:
        found = connection.execute(
            sa.select(sa.func.max(change.c.seq)).where(change.c.changed_at < older_than)
        ).scalar_one_or_none()
        if found is not None:
            boundaries.append(int(found))
    if keep is not None:
        found = connection.execute(
            sa.select(change.c.seq).order_by(change.c.seq.desc()).offset(keep).limit(1)
        ).scalar_one_or_none()
        if found is not None:
            boundaries.append(int(found))
    if not boundaries:
        return 0
    newest = sa.select(sa.func.max(change.c.seq)).scalar_subquery()
    oldest = (
        sa.select(change.c.seq)
        .where(change.c.seq <= max(boundaries), change.c.seq < newest)
        .order_by(change.c.seq)
        .limit(batch)
        .subquery()
    )
    upto = connection.execute(sa.select(sa.func.max(oldest.c.seq))).scalar_one_or_none()
    if upto is None:
        return 0
    deleted = connection.execute(sa.delete(change).where(change.c.seq <= upto)).rowcount
    connection.execute(
        sa.update(state).where(state.c.pruned_through < upto).values(pruned_through=upto)
    )
    return int(deleted)


# --- the feed of one process ----------------------------------------------------------


class _Ring:
    """The newest change rows this process has read: every committed change in (floor, head]."""

    def __init__(self, head: int) -> None:
        self.floor = head
        self.head = head
        self._seqs: list[int] = []
        self._rows: list[sa.Row[Any]] = []

    def extend(self, rows: Sequence[sa.Row[Any]]) -> None:
        for row in rows:
            self._seqs.append(row.seq)
            self._rows.append(row)
        if rows:
            self.head = rows[-1].seq
        if len(self._seqs) > 2 * RING_SIZE:
            cut = len(self._seqs) - RING_SIZE
            self.floor = self._seqs[cut - 1]
            del self._seqs[:cut], self._rows[:cut]

    def after(self, position: int, limit: int) -> list[sa.Row[Any]] | None:
        """The changes after `position`, or None when the ring no longer reaches back to it."""
        if position < self.floor:
            return None
        start = bisect.bisect_right(self._seqs, position)
        return self._rows[start : start + limit]


class ChangeFeed:
    """New changes for this process's WatchFlows calls: polled or notified, then fanned out."""

    def __init__(
        self,
        database: Database,
        settings: WatchSettings,
        *,
        database_url: str,
        metrics: Metrics | None = None,
        listen: bool = True,
    ) -> None:
        self._database = database
        self._settings = settings
        self._url = sa.make_url(database_url)
        self._listen = listen and self._url.get_backend_name() == "postgresql"
        self._metrics = metrics
        self._watchers = 0
        self._closing = False
        self._ring: _Ring | None = None
        self._new_changes = asyncio.Event()  # replaced after each wake-up
        self._poke = asyncio.Event()  # a notification arrived
        self._active = asyncio.Event()  # some watcher is open
        self._listening = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def for_settings(
        cls, database: Database, settings: Settings, metrics: Metrics | None
    ) -> ChangeFeed:
        return cls(
            database,
            settings.watch,
            database_url=settings.database.url,
            metrics=metrics,
            listen=not settings.database.behind_pooler,
        )

    def start(self) -> None:
        """Start the background tasks: reading new changes, listening, pruning."""
        self._tasks.append(asyncio.create_task(self._read_loop()))
        self._tasks.append(asyncio.create_task(self._prune_loop()))
        if self._listen:
            self._tasks.append(asyncio.create_task(self._listen_loop()))

    async def close(self) -> None:
        """End every watch (UNAVAILABLE with its resume token), then stop the tasks."""
        self._closing = True
        self._wake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    @property
    def watchers(self) -> int:
        return self._watchers

    # --- one watch ---

    async def watch(self, query: WatchQuery) -> AsyncIterator[flow_service_pb2.WatchFlowsResponse]:
        """The responses of one WatchFlows call, until it is cancelled or the server stops."""
        if self._closing:
            raise WatchEndedError("")
        if self._watchers >= self._settings.max_watchers:
            raise TooManyWatchersError(
                f"this server already serves {self._settings.max_watchers} watches "
                "(--watch-max-watchers); retry later or on another server"
            )
        self._watchers += 1
        self._count_watchers()
        try:
            async for response in self._watch(query):
                yield response
        finally:
            self._watchers -= 1
            if not self._watchers:
                self._active.clear()
            self._count_watchers()

    async def _watch(self, query: WatchQuery) -> AsyncIterator[flow_service_pb2.WatchFlowsResponse]:
        info = await self._database.read(feed_info, READ_TIMEOUT)
        if not info.installed:
            raise ChangeFeedDisabledError(
                "this database has no change capture: WatchFlows on a database a Prefect server "
                "owns needs `flowservice changefeed add --database-url …` first"
            )
        feed_id = info.feed_id
        where = on_change_rows(query.flows) if query.flows is not None else None
        if query.send_initial_state:
            position = -1
            async for response in self._initial_state(query.flows, feed_id):
                if position < 0:
                    position = decode_resume_token(response.resume_token).seq
                yield response
        else:
            position = _start_position(query, info)
        self._active.set()
        last_sent = time.monotonic()
        bookmark_every = self._settings.bookmark_interval
        while True:
            if self._closing:
                raise WatchEndedError(encode_resume_token(feed_id, position))
            woken = self._new_changes
            rows, position = await self._next(position, where)
            if rows:
                for row in rows:
                    yield self._event(row, feed_id)
                last_sent = time.monotonic()
                continue
            wait = last_sent + bookmark_every - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), wait)
                continue
            if self._closing:
                continue
            response = flow_service_pb2.WatchFlowsResponse(
                resume_token=encode_resume_token(feed_id, position)
            )
            response.bookmark.SetInParent()
            yield response
            last_sent = time.monotonic()

    async def _initial_state(
        self, flows: Clause | None, feed_id: str
    ) -> AsyncIterator[flow_service_pb2.WatchFlowsResponse]:
        """The flows as they are, then `initial_state_done`, all with the snapshot's position."""
        position, rows = await self._database.read(_initial_work(flows), READ_TIMEOUT)
        token = encode_resume_token(feed_id, position)
        for row in rows:
            response = flow_service_pb2.WatchFlowsResponse(resume_token=token)
            fill_flow(response.existing, row[1:])
            yield response
        done = flow_service_pb2.WatchFlowsResponse(resume_token=token)
        done.initial_state_done.SetInParent()
        yield done

    async def _next(self, position: int, where: Clause | None) -> tuple[list[sa.Row[Any]], int]:
        """The next changes after `position` (and the new position), from the ring or the table."""
        ring = self._ring
        if ring is None:
            return [], position
        if where is None:
            rows = ring.after(position, READ_BATCH)
            if rows is not None:
                return rows, rows[-1].seq if rows else position
        upto = ring.head
        if upto <= position:
            return [], position
        rows, pruned_through = await self._database.read(
            _changes_work(position, upto, where), READ_TIMEOUT
        )
        if pruned_through > position:
            raise _expired()
        if len(rows) == READ_BATCH:
            return rows, rows[-1].seq
        return rows, upto  # every change to `upto` was read (the filter kept these)

    def _event(self, row: sa.Row[Any], feed_id: str) -> flow_service_pb2.WatchFlowsResponse:
        response = flow_service_pb2.WatchFlowsResponse(
            resume_token=encode_resume_token(feed_id, row.seq)
        )
        fill_flow(getattr(response, row.kind), row[3:])
        if self._metrics is not None:
            self._metrics.watch_lag.observe(max(time.time() - row.changed_at, 0.0))
            self._metrics.watch_events.labels(row.kind).inc()
        return response

    # --- background ---

    def _wake(self) -> None:
        woken, self._new_changes = self._new_changes, asyncio.Event()
        woken.set()

    def _count_watchers(self) -> None:
        if self._metrics is not None:
            self._metrics.watchers.set(self._watchers)

    async def _read_loop(self) -> None:
        """Read new changes into the ring while there are watchers; wake them."""
        while True:
            if not self._active.is_set():
                self._ring = None  # it goes stale while nobody reads it
                await self._active.wait()
            try:
                if self._ring is None:
                    info = await self._database.read(feed_info, READ_TIMEOUT)
                    self._ring = _Ring(info.last_seq)
                    self._wake()
                await self._read_new(self._ring)
            except Exception as error:  # noqa: BLE001  # the database may be away; keep trying
                log.warning("change feed: cannot read new changes: %s", error)
                await asyncio.sleep(max(self._settings.poll_interval, 0.5))
                continue
            interval = (
                self._settings.safety_poll_interval
                if self._listening
                else self._settings.poll_interval
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), interval)
            self._poke.clear()

    async def _read_new(self, ring: _Ring) -> None:
        while True:
            rows, _ = await self._database.read(_changes_work(ring.head, None, None), READ_TIMEOUT)
            if rows:
                ring.extend(rows)
                self._wake()
            if len(rows) < READ_BATCH:
                return

    async def _listen_loop(self) -> None:
        """PostgreSQL: LISTEN on a connection of its own; reconnect when it is lost."""
        import asyncpg  # noqa: PLC0415  # PostgreSQL only

        dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            connection = None
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(dsn, timeout=5)
                connection.add_termination_listener(lambda *_, lost=lost: lost.set())
                await connection.add_listener(schema.NOTIFY_CHANNEL, lambda *_: self._poke.set())
                self._listening = True
                self._poke.set()  # catch up with what came before LISTEN
                await lost.wait()
                log.warning("change feed: the LISTEN connection closed; polling meanwhile")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001  # unreachable: poll, retry
                log.warning("change feed: cannot LISTEN (%s); polling meanwhile", error)
            finally:
                self._listening = False
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=1)
            await asyncio.sleep(1.0)

    async def _prune_loop(self) -> None:
        """Delete history past retention, one bounded transaction at a time."""
        settings = self._settings
        while True:
            await asyncio.sleep(settings.prune_interval)
            try:
                while True:
                    older_than = time.time() - settings.retention if settings.retention else None
                    keep = settings.retention_count or None
                    work = _prune_work(older_than, keep, settings.prune_batch)
                    deleted = await self._database.write(work, READ_TIMEOUT)
                    if deleted < settings.prune_batch:
                        break
                    await asyncio.sleep(0.01)  # let other writers in between batches
            except Exception as error:  # noqa: BLE001  # try again next round
                log.warning("change feed: pruning failed: %s", error)


def _start_position(query: WatchQuery, info: FeedInfo) -> int:
    """Where a watch without the initial state starts: its token's position, or now."""
    if query.resume is None:
        return info.last_seq
    if query.resume.feed_id != info.feed_id:
        raise ResumeTokenExpiredError(
            "the resume token belongs to another change feed (another database, or change "
            "capture was dropped and added again): list the flows again and watch from there"
        )
    if query.resume.seq < info.pruned_through:
        raise _expired()
    return query.resume.seq


def _expired() -> ResumeTokenExpiredError:
    return ResumeTokenExpiredError(
        "the resume token is older than the change history this server keeps "
        "(--watch-retention, --watch-retention-count): list the flows again and watch from there"
    )


def _initial_work(flows: Clause | None) -> Any:
    return lambda connection: initial_state(connection, flows)


def _changes_work(after: int, upto: int | None, where: Clause | None) -> Any:
    return lambda connection: read_changes(
        connection, after=after, upto=upto, where=where, limit=READ_BATCH
    )


def _prune_work(older_than: float | None, keep: int | None, batch: int) -> Any:
    return lambda connection: prune(connection, older_than=older_than, keep=keep, batch=batch)
