"""Reads on PostgreSQL hot standbys, writes on the primary, and read-your-writes by WAL position.

`ReplicatedDatabase` is a `Database` over one primary and its streaming
standbys, so no servicer method knows there is more than one server:

* writes, migrations and the health probe go to the primary; after a write
  the call learns the primary's WAL insert position (`CallPositions`), which
  is at or past the end of the write's commit record;
* reads and streams go to a standby, taken in turn, that the background
  probe found up, in recovery and lagging no more than `max_replica_lag`;
  the primary serves them when no standby qualifies. A standby that fails a
  read with a lost or refused connection is skipped from then on (until the
  next probe finds it up) and the read is tried on the next target, so the
  caller sees no failure;
* a read whose call carries a position (`CallPositions.min_lsn`) is served
  only by a standby that has replayed at least that position, waiting up to
  `replica_wait` for one to get there, else by the primary. A transaction on
  a hot standby that starts after a commit record was replayed sees that
  commit, so such a read sees the write that produced the position.

Per call, positions travel in a context variable that the consistency
interceptor (`consistency.py`) sets from and returns to the call's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy.engine import make_url

from flowservice_server.db.dialect import Failure, classify
from flowservice_server.db.engine import Database, deadline_after, remaining

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Dialect
    from sqlalchemy.pool import Pool

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a standby's replay position is read while some read waits for it.
REPLAY_POLL_INTERVAL = 0.002
#: The longest a probe of one standby may take before it counts as down.
PROBE_TIMEOUT = 2.0
PRIMARY = "primary"


# --- WAL positions -----------------------------------------------------------------

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str) -> int:
    """PostgreSQL's text form of a WAL position (`16/B374D848`) as a number."""
    match = _LSN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a WAL position such as 0/16B3748")
    return int(match[1], 16) << 32 | int(match[2], 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass
class CallPositions:
    """The WAL positions of one call: the least its reads must see, the one its writes reached."""

    min_lsn: int | None = None
    written_lsn: int | None = None


#: Set by the consistency interceptor for the length of each call.
call_positions: ContextVar[CallPositions | None] = ContextVar(
    "flowservice_call_positions", default=None
)


def _wal_insert_position(connection: sa.Connection) -> int:
    text = connection.exec_driver_sql("SELECT pg_current_wal_insert_lsn()::text").scalar_one()
    return parse_lsn(str(text))


def _replay_position(connection: sa.Connection) -> int:
    text = connection.exec_driver_sql("SELECT pg_last_wal_replay_lsn()::text").scalar_one()
    return parse_lsn(str(text)) if text else 0


@dataclass(frozen=True)
class StandbyState:
    in_recovery: bool
    replay_lsn: int
    lag: float


def _standby_state(connection: sa.Connection) -> StandbyState:
    """Replay position and lag the usual way: zero when all received WAL is replayed,
    else the age of the last replayed commit."""
    row = connection.exec_driver_sql(
        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
        "CASE WHEN pg_last_wal_receive_lsn() IS NULL "
        "OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
        "ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) "
        "END::float8"
    ).one()
    in_recovery, replay, lag = row
    return StandbyState(bool(in_recovery), parse_lsn(replay) if replay else 0, float(lag))


# --- targets -----------------------------------------------------------------------


class ReplicaObserver(Protocol):
    """What the metrics want to know: who served each read, and how each standby is doing."""

    def read_served(self, target: str) -> None: ...

    def replica_state(self, target: str, *, up: bool, lag: float) -> None: ...


def target_name(url: str) -> str:
    """How logs and metrics name a standby: host, port and database, no user or password."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


@dataclass(eq=False)
class Standby:
    """One hot standby: its database, and what the last probe or read learned of it."""

    name: str
    database: Database
    up: bool = False
    lag: float = math.inf
    replay_lsn: int = 0
    _waiters: list[tuple[int, asyncio.Future[bool]]] = field(default_factory=list)
    _poller: asyncio.Task[None] | None = None
    _told: bool = False  # whether the first probe's outcome was logged

    def usable(self, max_lag: float) -> bool:
        return self.up and self.lag <= max_lag

    def mark_down(self, reason: str) -> None:
        """Send no reads here until a probe finds it fit; say so once per outage."""
        if self.up or not self._told:
            log.warning("standby %s gets no reads until it answers again: %s", self.name, reason)
        self.up = False
        self._told = True

    def mark_up(self, state: StandbyState) -> None:
        """A probe found it answering and in recovery: reads may come while it keeps up."""
        if not self.up:
            log.info("standby %s serves reads (lag %.3fs)", self.name, state.lag)
        self.up = True
        self._told = True
        self.lag = state.lag
        self.replay_lsn = max(self.replay_lsn, state.replay_lsn)

    async def replayed(self, position: int, wait: float) -> bool:
        """Whether this standby has replayed `position`, waiting up to `wait` seconds for it."""
        if self.replay_lsn >= position:
            return True
        if wait <= 0:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, future))
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_replay())
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            return False

    async def _poll_replay(self) -> None:
        """Read the replay position every few milliseconds while any read waits for it.

        One poller per standby, however many reads wait: each poll answers all.
        """
        while self._waiters:
            try:
                position = await self.database.read(_replay_position, PROBE_TIMEOUT)
            except Exception as error:  # noqa: BLE001  # the waiting reads go to the primary
                self.mark_down(_reason(error))
                position = -1
            self.replay_lsn = max(self.replay_lsn, position)
            waiting = []
            for wanted, future in self._waiters:
                if future.done():
                    continue
                if position < 0 or self.replay_lsn >= wanted:
                    future.set_result(position >= 0)
                else:
                    waiting.append((wanted, future))
            self._waiters = waiting
            if waiting:
                await asyncio.sleep(REPLAY_POLL_INTERVAL)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
        await self.database.close()


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).splitlines()[0] if str(original) else ""
    return text or type(original).__name__


def _connection_failed(error: BaseException) -> bool:
    """A failure of the standby rather than of the read: the read may go elsewhere.

    Refused or lost connections, a server shutting down or starting, and a
    query a standby cancelled to replay (a recovery conflict) all qualify;
    the call's own deadline passing (a built-in TimeoutError, which is an
    OSError) does not: the next target would have no time left either.
    """
    if isinstance(error, TimeoutError):
        return False
    return classify(error) is Failure.UNAVAILABLE or (
        getattr(getattr(error, "orig", None), "sqlstate", None) == "40001"
    )


class ReplicatedDatabase(Database):
    """A primary and its hot standbys as one `Database`; see the module's docstring."""

    def __init__(
        self,
        primary: Database,
        standbys: Sequence[Standby],
        *,
        max_replica_lag: float,
        replica_wait: float,
        probe_interval: float,
    ) -> None:
        self.primary = primary
        self.standbys = list(standbys)
        # A standby may not have replayed a delete the primary committed.
        self.read_before_create = primary.read_before_create and not self.standbys
        self.max_replica_lag = max_replica_lag
        self.replica_wait = replica_wait
        self.probe_interval = probe_interval
        self.observer: ReplicaObserver | None = None
        self._turn = itertools.count()
        self._prober: asyncio.Task[None] | None = None

    # --- what the primary does alone ---

    @property
    def dialect(self) -> Dialect:
        return self.primary.dialect

    @property
    def pool(self) -> Pool:
        return self.primary.pool

    async def maintain(self, work: Callable[[sa.Connection], None]) -> None:
        await self.primary.maintain(work)

    async def ping(self) -> None:
        """Health follows the primary: without it nothing can be written."""
        await self.primary.ping()

    # --- routing ---

    async def run(
        self,
        work: Callable[[sa.Connection], T],
        time_left: float | None,
        *,
        write: bool,
        snapshot: bool = False,
    ) -> T:
        if write:
            result = await self.primary.run(work, time_left, write=True)
            await self._note_write_position()
            return result
        deadline = deadline_after(time_left)
        targets = await self._read_targets(time_left)
        for target in targets:
            database = self.primary if target is None else target.database
            try:
                result = await database.run(
                    work, remaining(deadline), write=False, snapshot=snapshot
                )
            except Exception as error:
                if target is None or not _connection_failed(error):
                    raise
                target.mark_down(_reason(error))
                continue
            self._served(target)
            return result
        raise AssertionError("not reached: the primary ends every list of targets")

    async def stream_batches(
        self, query: sa.Select[Any], batch_size: int, deadline: float | None
    ) -> AsyncGenerator[Sequence[sa.Row[Any]], None]:
        """As `run`'s reads: a standby that fails before the first batch passes the stream on.

        Once rows have been handed out the stream stays on its target: its
        snapshot cannot move to another server.
        """
        for target in await self._read_targets(remaining(deadline)):
            database = self.primary if target is None else target.database
            batches = database.stream_batches(query, batch_size, deadline)
            started = False
            try:
                async for rows in batches:
                    started = True
                    yield rows
            except Exception as error:
                if started or target is None or not _connection_failed(error):
                    raise
                target.mark_down(_reason(error))
                continue
            finally:
                await batches.aclose()
            self._served(target)
            return

    async def _read_targets(self, time_left: float | None) -> list[Standby | None]:
        """Where a read may go, in order; None, the primary, always comes last.

        Usable standbys are taken in turn; a read with a position goes only
        to a standby that has replayed it (waiting for the next one in turn
        up to `replica_wait`), else to the primary.
        """
        usable = [s for s in self.standbys if s.usable(self.max_replica_lag)]
        if not usable:
            return [None]
        start = next(self._turn) % len(usable)
        in_turn: list[Standby | None] = [*usable[start:], *usable[:start]]
        positions = call_positions.get()
        wanted = positions.min_lsn if positions is not None else None
        if wanted is None:
            return [*in_turn, None]
        caught_up = [s for s in usable if s.replay_lsn >= wanted]
        if caught_up:
            return [caught_up[start % len(caught_up)], None]
        first = usable[start]
        wait = self.replica_wait if time_left is None else min(self.replica_wait, time_left)
        if await first.replayed(wanted, wait):
            return [first, None]
        return [None]

    def _served(self, target: Standby | None) -> None:
        if self.observer is not None:
            self.observer.read_served(PRIMARY if target is None else target.name)

    async def _note_write_position(self) -> None:
        """Tell the call how far the primary's WAL reached once its write committed."""
        positions = call_positions.get()
        if positions is None:
            return
        try:
            position = await self.primary.read(_wal_insert_position, PROBE_TIMEOUT)
        except Exception as error:  # noqa: BLE001  # the write stands; the answer lacks its token
            log.warning("no WAL position for a committed write: %s", _reason(error))
            return
        positions.written_lsn = max(positions.written_lsn or 0, position)

    # --- probing ---

    def start(self) -> None:
        """Probe the standbys now and every `probe_interval` seconds, until closed."""
        if self._prober is None:
            self._prober = asyncio.create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.gather(*(self.probe(standby) for standby in self.standbys))
            await asyncio.sleep(self.probe_interval)

    async def probe(self, standby: Standby) -> None:
        """Learn whether `standby` is up, in recovery, and how far it has replayed."""
        try:
            state = await asyncio.wait_for(
                standby.database.read(_standby_state, PROBE_TIMEOUT), PROBE_TIMEOUT
            )
        except Exception as error:  # noqa: BLE001  # any failure to answer is "down"
            standby.mark_down(_reason(error))
        else:
            if not state.in_recovery:
                standby.mark_down("it is not in recovery (promoted?): not a standby of the primary")
            else:
                standby.mark_up(state)
        if self.observer is not None:
            self.observer.replica_state(standby.name, up=standby.up, lag=standby.lag)

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(BaseException):
                await self._prober
        for standby in self.standbys:
            await standby.close()
        await self.primary.close()


def primary_of(database: Database) -> Database:
    """The database that takes writes (for what must stay on it, such as LISTEN)."""
    return database.primary if isinstance(database, ReplicatedDatabase) else database
