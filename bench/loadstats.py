"""The time-bounded load loop and its statistics, shared by both load generators.

Standard library only: it runs under FlowService's venv (gRPC) and under
Prefect's (REST). Why one loop for both: the two servers must be measured the
same way (warm-up, duration, concurrency, what counts as a failure), so only
"send one request" differs between the generators.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_TICK = os.sysconf("SC_CLK_TCK")


class ExhaustedError(Exception):
    """No more inputs for this operation (DeleteFlow ran out of flows to delete)."""


class UnexpectedReplyError(Exception):
    """A call that completed but not as expected; `kind` names the failure for the report."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def pin_to_cpu(cpu: int) -> None:
    """Run this process (the load generator) on `cpu` only, away from the server's CPU."""
    os.sched_setaffinity(0, {cpu})


def process_tree_cpu(pid: int | None) -> float:
    """User + system CPU seconds of `pid` and its descendants (from /proc); 0 without a pid."""
    if pid is None:
        return 0.0
    children: dict[int, list[int]] = collections.defaultdict(list)
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                text = file.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        stats[int(entry)] = fields
        children[int(fields[1])].append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        found = stats.get(current)
        if found is not None:
            total += (int(found[11]) + int(found[12])) / _TICK  # utime, stime
        todo += children.get(current, [])
    return total


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Measurement:
    """One operation at one concurrency: what the report shows."""

    op: str
    concurrency: int
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    result: str = ""
    exhausted: bool = False
    unfinished: int = 0
    warmup_ok: int = 0
    warmup_errors: dict[str, int] = field(default_factory=dict)
    settle: float = 0.0

    def as_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        attempts = self.ok + sum(self.errors.values())

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "op": self.op,
            "concurrency": self.concurrency,
            "requests": self.ok,
            "attempts": attempts,
            "errors": self.errors,
            "error_count": sum(self.errors.values()),
            "elapsed_s": round(self.elapsed, 3),
            "rps": round(self.ok / self.elapsed, 2) if self.elapsed else 0.0,
            "p50_ms": ms(percentile(lat, 0.50)),
            "p90_ms": ms(percentile(lat, 0.90)),
            "p99_ms": ms(percentile(lat, 0.99)),
            "max_ms": ms(lat[-1] if lat else None),
            "client_cpu_pct": round(100 * self.client_cpu / self.elapsed, 1) if self.elapsed else 0,
            "server_cpu_ms_per_request": round(1000 * self.server_cpu / self.ok, 3)
            if self.ok
            else None,
            "server_cpu_pct": round(100 * self.server_cpu / self.elapsed, 1) if self.elapsed else 0,
            "result": self.result,
            "exhausted": self.exhausted,
            "unfinished": self.unfinished,
            "warmup_requests": self.warmup_ok,
            "warmup_errors": self.warmup_errors,
            "settle_s": round(self.settle, 2),
        }


async def _drive(
    send: Callable[[int], Awaitable[str]],
    *,
    concurrency: int,
    duration: float,
    request_timeout: float,
    counter: list[int],
    sink: Measurement,
    record: bool,
) -> float:
    """`concurrency` workers send back to back until `duration` has passed; returns elapsed."""
    deadline = time.perf_counter() + duration
    errors: collections.Counter[str] = collections.Counter()
    ok = 0
    latencies: list[float] = []
    stop = False

    async def worker() -> None:
        nonlocal ok, stop
        while not stop and time.perf_counter() < deadline:
            number = counter[0]
            counter[0] += 1
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(send(number), request_timeout)
            except ExhaustedError:
                stop = True
                sink.exhausted = True
                return
            except UnexpectedReplyError as failure:
                errors[failure.kind] += 1
                continue
            except TimeoutError:
                errors["client timeout"] += 1
                continue
            except Exception as error:  # noqa: BLE001  # every failure is counted by its kind
                errors[_kind(error)] += 1
                continue
            latencies.append(time.perf_counter() - started)
            ok += 1
            if record and not sink.result:
                sink.result = result

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=duration + request_timeout + 5)
    for task in pending:  # cannot happen unless a send ignores its timeout
        task.cancel()
    elapsed = time.perf_counter() - started
    if record:
        sink.ok, sink.latencies, sink.errors = ok, latencies, dict(errors)
        sink.unfinished = len(pending)
    else:
        sink.warmup_ok, sink.warmup_errors = ok, dict(errors)
    return elapsed


def _kind(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if callable(code):  # grpc.aio.AioRpcError
        return f"gRPC {getattr(code(), 'name', code())}"
    return type(error).__name__


async def settle(pid: int | None, *, idle: float = 0.1, limit: float = 300.0) -> float:
    """Wait until the server is idle (under `idle` of a CPU over 0.5 s); seconds waited.

    Why: a server may still be working on calls the previous row abandoned
    (a client timeout does not stop Prefect's handler), which would slow the
    next row down.
    """
    started = time.perf_counter()
    if pid is None:
        return 0.0
    while time.perf_counter() - started < limit:
        before = process_tree_cpu(pid)
        await asyncio.sleep(0.5)
        if process_tree_cpu(pid) - before < idle * 0.5:
            break
    return time.perf_counter() - started


async def _first_call_seconds(
    send: Callable[[int], Awaitable[str]], counter: list[int], request_timeout: float
) -> float:
    """One call alone; its duration (a slow operation then skips the concurrent warm-up,
    which would only queue c slow calls behind each other)."""
    started = time.perf_counter()
    counter[0] += 1
    with contextlib.suppress(Exception):
        await asyncio.wait_for(send(counter[0] - 1), request_timeout)
    return time.perf_counter() - started


async def measure(
    op: str,
    send: Callable[[int], Awaitable[str]],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    request_timeout: float,
    server_pid: int | None,
) -> Measurement:
    """Wait for an idle server, warm up (discarded), then measure for `duration` seconds."""
    sink = Measurement(op=op, concurrency=concurrency)
    sink.settle = await settle(server_pid)
    counter = [0]
    if warmup > 0 and await _first_call_seconds(send, counter, request_timeout) < warmup / 2:
        await _drive(
            send,
            concurrency=concurrency,
            duration=warmup,
            request_timeout=request_timeout,
            counter=counter,
            sink=sink,
            record=False,
        )
    server_before = process_tree_cpu(server_pid)
    client_before = time.process_time()
    sink.elapsed = await _drive(
        send,
        concurrency=concurrency,
        duration=duration,
        request_timeout=request_timeout,
        counter=counter,
        sink=sink,
        record=True,
    )
    sink.client_cpu = time.process_time() - client_before
    sink.server_cpu = process_tree_cpu(server_pid) - server_before
    return sink
