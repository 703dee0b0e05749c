"""How `flowservice flows` shows flows: a table that fits the terminal, JSON, progress bars."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowservice.client import flow_labels

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from flowservice.v1 import flow_pb2

#: A listing or removal of at least this many flows shows a progress bar (on a terminal).
PROGRESS_AT = 500

#: The columns, narrowest set first; a table uses the widest set that fits.
_COLUMN_SETS: list[tuple[int, tuple[str, ...]]] = [
    (120, ("name", "id", "tags", "labels", "created", "updated")),
    (90, ("name", "id", "tags", "updated")),
    (60, ("name", "tags", "updated")),
    (0, ("name", "tags")),
]


def flow_dict(flow: flow_pb2.Flow) -> dict[str, Any]:
    """A flow in its JSON form (proto field names), as `--json` prints it."""
    record = json_format.MessageToDict(flow, preserving_proto_field_name=True)
    if "labels" in record:  # whole numbers as integers, as stored
        record["labels"] = flow_labels(flow)
    return record


class Output:
    """Where a command writes: stdout for results, stderr for messages and progress."""

    def __init__(self, mode: str, stdout: TextIO | None = None) -> None:
        self.mode = mode  # "table", "json" or "jsonl"
        self.stdout = stdout or sys.stdout
        self.console = Console(file=self.stdout, highlight=False)
        self.errors = Console(file=sys.stderr, highlight=False)

    @property
    def interactive(self) -> bool:
        return self.errors.is_terminal

    def message(self, text: str) -> None:
        """A line for people on stderr, never wrapped (it may be pasted into a bug report)."""
        sys.stderr.write(text + "\n")

    def value(self, value: Any) -> None:
        """One result that is not a flow (a count)."""
        if self.mode == "table":
            self.console.print(str(value), markup=False)
        else:
            self.stdout.write(json.dumps(value) + "\n")

    def flows(self, flows: Iterable[flow_pb2.Flow], *, single: bool = False) -> int:
        """Print flows; the number printed. `single`: one flow, an object not a list in JSON."""
        count = 0
        if self.mode == "jsonl":
            for flow in flows:
                self.stdout.write(json.dumps(flow_dict(flow)) + "\n")
                count += 1
            return count
        listed = list(flows)
        if self.mode == "json":
            dicts = [flow_dict(flow) for flow in listed]
            self.stdout.write(json.dumps(dicts[0] if single else dicts, indent=2) + "\n")
        elif listed:
            self.console.print(self.table(listed))
        elif not single:
            self.message("no matching flows")
        return len(listed)

    def table(self, flows: list[flow_pb2.Flow]) -> Table:
        width = self.console.width
        columns = next(names for least, names in _COLUMN_SETS if width >= least)
        table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
        for name in columns:
            table.add_column(
                name.upper(),
                no_wrap=name in ("id", "created", "updated"),
                overflow="ellipsis" if name != "name" else "fold",
                min_width=len(name),
            )
        for flow in flows:
            table.add_row(*(_cell(flow, name) for name in columns))
        return table

    @contextmanager
    def progress(self, what: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr for `total` items when on a terminal and many; `advance(n)`."""
        if not self.interactive or total is None or total < PROGRESS_AT:
            yield lambda _n: None
            return
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.errors,
            transient=True,
        )
        with bar:
            task = bar.add_task(what, total=total)
            yield lambda n: bar.advance(task, n)


def _cell(flow: flow_pb2.Flow, column: str) -> str:
    if column == "name":
        return flow.name
    if column == "id":
        return flow.id
    if column == "tags":
        return ", ".join(flow.tags)
    if column == "labels":
        labels = flow_dict(flow).get("labels") or {}
        return ", ".join(f"{key}={value}" for key, value in labels.items())
    stamp = getattr(flow, column)
    return str(stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))
