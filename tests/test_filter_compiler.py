"""The filter compiler on its own: each rule builder, `combine`, and the tables' coverage.

The builders are evaluated on a real (migrated) SQLite database, without a
server; the RPC-level tests run the same semantics on both backends.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor

from flowservice.v1 import filters_pb2
from flowservice_server import filters
from flowservice_server.db.tables import flow, flow_run, task_run
from flowservice_server.errors import Violations
from flowservice_server.parsing import parse_state_type

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def database(sqlite_template: Path, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated SQLite file with flows a..d and a run of flow a."""
    path = tmp_path / "compiler.db"
    shutil.copy(sqlite_template, path)
    engine = sa.create_engine(f"sqlite:///{path}")
    rows = [
        ("a", ["db", "blue"]),
        ("b", ["db"]),
        ("c_x", []),
        ("cYx", ["red"]),
    ]
    with engine.begin() as connection:
        for name, tags in rows:
            connection.execute(
                flow.insert().values(
                    id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
                    created=T0,
                    updated=T0,
                    name=name,
                    tags=tags,
                )
            )
        for number, (start, expected, state) in enumerate(
            [(T0, None, "FAILED"), (None, T0 + timedelta(hours=1), None), (None, None, "COMPLETED")]
        ):
            connection.execute(
                flow_run.insert().values(
                    id=uuid.UUID(int=number + 1),
                    created=T0,
                    updated=T0,
                    name=f"run-{number}",
                    flow_id=uuid.uuid5(uuid.NAMESPACE_DNS, "a"),
                    tags=[],
                    start_time=start,
                    expected_start_time=expected,
                    state_type=state,
                )
            )
        for name, run in (("in-a-run", uuid.UUID(int=1)), ("autonomous", None)):
            connection.execute(
                task_run.insert().values(
                    id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
                    created=T0,
                    updated=T0,
                    name=name,
                    flow_run_id=run,
                    tags=[],
                    task_key=name,
                    dynamic_key=name,
                )
            )
    yield engine
    engine.dispose()


def matching(engine: sa.Engine, clause: sa.ColumnElement[bool] | None) -> list[str]:
    assert clause is not None
    with engine.connect() as connection:
        return list(
            connection.execute(sa.select(flow.c.name).where(clause).order_by(flow.c.name)).scalars()
        )


def matching_runs(engine: sa.Engine, clause: sa.ColumnElement[bool] | None) -> list[str]:
    assert clause is not None
    with engine.connect() as connection:
        query = sa.select(flow_run.c.name).where(clause).order_by(flow_run.c.name)
        return list(connection.execute(query).scalars())


def listed(*values: Any) -> struct_pb2.ListValue:
    result = struct_pb2.ListValue()
    result.extend(values)
    return result


def at(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- builders ----------------------------------------------------------------------


def test_any_in_matches_listed_values_and_an_empty_list_matches_nothing(
    database: sa.Engine,
) -> None:
    rule = filters.any_in(flow.c.name)
    assert matching(database, rule(listed("a", "c_x", "zz"), "p", Violations())) == ["a", "c_x"]
    assert matching(database, rule(listed(), "p", Violations())) == []


def test_any_in_reports_bad_elements_by_index() -> None:
    violations = Violations()
    filters.any_in(flow.c.id, uuid.UUID)(
        listed(str(uuid.uuid4()), 3, "x"), "flows.id.any", violations
    )
    assert [v.field for v in violations.items] == ["flows.id.any[1]", "flows.id.any[2]"]


def test_not_any_in_excludes_listed_values(database: sa.Engine) -> None:
    rule = filters.not_any_in(flow.c.name)
    assert matching(database, rule(["a", "b"], "p", Violations())) == ["cYx", "c_x"]


def test_not_any_in_never_matches_null(database: sa.Engine) -> None:
    rule = filters.not_any_in(flow_run.c.state_type, parse_state_type)
    assert matching_runs(database, rule(["FAILED"], "p", Violations())) == ["run-2"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A", ["a"]),  # case-insensitive
        ("x", ["cYx", "c_x"]),  # substring
        ("c_x", ["cYx", "c_x"]),  # `_` is any one character
        ("c%", ["cYx", "c_x"]),  # `%` is any run of characters
    ],
)
def test_like_is_a_case_insensitive_substring_with_wildcards(
    database: sa.Engine, value: str, expected: list[str]
) -> None:
    assert matching(database, filters.like(flow.c.name)(value, "p", Violations())) == expected


def test_is_null_tests_the_column(database: sa.Engine) -> None:
    rule = filters.is_null(flow_run.c.start_time)
    assert matching_runs(database, rule(True, "p", Violations())) == ["run-1", "run-2"]
    assert matching_runs(database, rule(False, "p", Violations())) == ["run-0"]


def test_time_bounds_are_inclusive(database: sa.Engine) -> None:
    column = flow_run.c.start_time
    before = filters.at_or_before(column)(at(T0), "p", Violations())
    after = filters.at_or_after(column)(at(T0), "p", Violations())
    later = filters.at_or_after(column)(at(T0 + timedelta(microseconds=1)), "p", Violations())
    assert matching_runs(database, before) == ["run-0"]
    assert matching_runs(database, after) == ["run-0"]
    assert matching_runs(database, later) == []


def test_sub_microsecond_digits_of_bounds_are_dropped_as_prefect_drops_them(
    database: sa.Engine,
) -> None:
    column = flow_run.c.start_time
    just_after = at(T0)
    just_after.nanos += 1  # T0 + 1ns, read as T0: the inclusive lower bound takes in T0
    assert matching_runs(database, filters.at_or_after(column)(just_after, "p", Violations())) == [
        "run-0"
    ]
    almost = at(T0)
    almost.nanos += 999  # T0 + 999ns is still T0 at microsecond precision
    assert matching_runs(database, filters.at_or_before(column)(almost, "p", Violations())) == [
        "run-0"
    ]
    just_before = at(T0)
    just_before.seconds -= 1
    just_before.nanos = 999_999_999  # T0 - 1ns, read as T0 - 1µs: excludes T0
    assert (
        matching_runs(database, filters.at_or_before(column)(just_before, "p", Violations())) == []
    )


def test_an_invalid_timestamp_is_a_violation() -> None:
    violations = Violations()
    bad = timestamp_pb2.Timestamp(seconds=10**12)
    assert filters.at_or_after(flow_run.c.start_time)(bad, "x.after", violations) is None
    assert [v.field for v in violations.items] == ["x.after"]


def test_flow_run_start_bounds_fall_back_to_the_expected_start(database: sa.Engine) -> None:
    table = filters.RULES[filters_pb2.FlowRunFilterStartTime]
    later = at(T0 + timedelta(minutes=30))
    assert matching_runs(database, table["after"](later, "p", Violations())) == ["run-1"]
    assert matching_runs(database, table["is_null"](True, "p", Violations())) == ["run-1", "run-2"]


def test_tags_have_all_is_a_superset_test(database: sa.Engine) -> None:
    rule = filters.has_all_tags(flow.c.tags)
    assert matching(database, rule(["db"], "p", Violations())) == ["a", "b"]
    assert matching(database, rule(["db", "blue"], "p", Violations())) == ["a"]
    assert matching(database, rule(["db", "db"], "p", Violations())) == ["a", "b"]
    assert matching(database, rule(["db", "nope"], "p", Violations())) == []


@pytest.mark.parametrize(
    ("stored", "wanted"),
    [
        pytest.param('["caf\\u00e9"]', ["café"], id="ascii-escaped"),
        pytest.param('["café"]', ["café"], id="raw-utf8"),
        pytest.param('["x\\u003cy", "db"]', ["x<y", "db"], id="html-escaped-and-plain"),
        pytest.param('["a\\/b"]', ["a/b"], id="escaped-solidus"),
        pytest.param('["say \\"hi\\""]', ['say "hi"'], id="quote"),
        pytest.param('[ "db" , "blue" ]', ["blue", "db"], id="other-spacing"),
    ],
)
def test_tags_have_all_finds_tags_however_a_writer_serialised_them(
    database: sa.Engine, stored: str, wanted: list[str]
) -> None:
    """The SQLite text pre-filter never drops a row the exact test keeps."""
    with database.begin() as connection:
        connection.execute(
            flow.insert().values(id=uuid.uuid4(), created=T0, updated=T0, name="z", tags=[])
        )
        connection.exec_driver_sql("UPDATE flow SET tags = ? WHERE name = 'z'", (stored,))
    rule = filters.has_all_tags(flow.c.tags)
    assert "z" in matching(database, rule(wanted, "p", Violations()))
    assert "z" not in matching(database, rule([*wanted, "nope"], "p", Violations()))


def test_tags_have_all_pre_filters_plain_tags_only(database: sa.Engine) -> None:
    rule = filters.has_all_tags(flow.c.tags)

    def sql(tags: list[str]) -> str:
        clause = rule(tags, "p", Violations())
        assert clause is not None
        return str(clause.compile(dialect=database.dialect))

    assert sql(["db", "blue", "db"]).count("instr(") == 2  # once per distinct tag
    assert sql(["db", "café"]).count("instr(") == 1
    # Each shape is its own cached statement: alternating them stays right.
    for _ in range(2):
        assert matching(database, rule(["db", "blue"], "p", Violations())) == ["a"]
        assert matching(database, rule(["café"], "p", Violations())) == []
        assert matching(database, rule(["db"], "p", Violations())) == ["a", "b"]


def test_tags_have_any_is_an_overlap_test(database: sa.Engine) -> None:
    rule = filters.has_any_tag(flow.c.tags)
    assert matching(database, rule(listed("blue", "red"), "p", Violations())) == ["a", "cYx"]
    assert matching(database, rule(listed(), "p", Violations())) == []


def test_tags_is_null_means_an_empty_list(database: sa.Engine) -> None:
    rule = filters.tags_is_null(flow.c.tags)
    assert matching(database, rule(True, "p", Violations())) == ["c_x"]
    assert matching(database, rule(False, "p", Violations())) == ["a", "b", "cYx"]


def matching_task_runs(engine: sa.Engine, clause: sa.ColumnElement[bool]) -> list[str]:
    with engine.connect() as connection:
        query = sa.select(task_run.c.name).where(clause).order_by(task_run.c.name)
        return list(connection.execute(query).scalars())


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            filters_pb2.TaskRunFilterFlowRunId(), ["in-a-run"], id="absent-is-null-means-false"
        ),
        pytest.param(filters_pb2.TaskRunFilterFlowRunId(is_null=False), ["in-a-run"], id="false"),
        pytest.param(filters_pb2.TaskRunFilterFlowRunId(is_null=True), ["autonomous"], id="true"),
        pytest.param(
            filters_pb2.TaskRunFilterFlowRunId(is_null=True, any=listed(str(uuid.UUID(int=1)))),
            ["autonomous"],
            id="true-ignores-any",
        ),
        pytest.param(
            filters_pb2.TaskRunFilterFlowRunId(any=listed(str(uuid.UUID(int=1)))),
            ["in-a-run"],
            id="any",
        ),
        pytest.param(filters_pb2.TaskRunFilterFlowRunId(any=listed()), [], id="empty-any"),
    ],
)
def test_task_run_flow_run_id_defaults_is_null_to_false(
    database: sa.Engine, message: filters_pb2.TaskRunFilterFlowRunId, expected: list[str]
) -> None:
    clause = filters.compile_filter(message, "task_runs.flow_run_id", Violations())
    assert matching_task_runs(database, clause) == expected


# --- combining ---------------------------------------------------------------------


def test_combine_without_conditions_is_true_whatever_the_operator(database: sa.Engine) -> None:
    for operator in (
        filters_pb2.OPERATOR_UNSPECIFIED,
        filters_pb2.OPERATOR_AND,
        filters_pb2.OPERATOR_OR,
    ):
        assert len(matching(database, filters.combine(operator, []))) == 4


def test_combine_joins_with_and_or_or(database: sa.Engine) -> None:
    a = flow.c.name == "a"
    db = filters.has_all_tags(flow.c.tags)(["db"], "p", Violations())
    assert db is not None
    assert matching(database, filters.combine(filters_pb2.OPERATOR_AND, [a, db])) == ["a"]
    assert matching(database, filters.combine(filters_pb2.OPERATOR_UNSPECIFIED, [a, db])) == ["a"]
    assert matching(database, filters.combine(filters_pb2.OPERATOR_OR, [a, db])) == ["a", "b"]


def test_an_empty_child_is_true_so_an_or_parent_matches_everything(database: sa.Engine) -> None:
    message = filters_pb2.FlowFilter(
        operator=filters_pb2.OPERATOR_OR, name=filters_pb2.FlowFilterName(any=listed("a"))
    )
    message.tags.SetInParent()
    assert len(matching(database, filters.compile_filter(message, "flows", Violations()))) == 4


def test_state_filters_drop_empty_children(database: sa.Engine) -> None:
    message = filters_pb2.FlowRunFilterState(
        operator=filters_pb2.OPERATOR_OR,
        type=filters_pb2.FlowRunFilterStateType(any=listed("FAILED")),
    )
    message.name.SetInParent()
    clause = filters.compile_filter(message, "flow_runs.state", Violations())
    assert matching_runs(database, clause) == ["run-0"]


def test_the_compiler_reports_every_violation_with_its_path() -> None:
    message = filters_pb2.FlowFilter(
        operator=9,  # type: ignore[arg-type]  # invalid on purpose
        id=filters_pb2.FlowFilterId(any=listed("nope"), not_any=["x"]),
    )
    violations = Violations()
    filters.compile_filter(message, "flows", violations)
    assert sorted(v.field for v in violations.items) == [
        "flows.id.any[0]",
        "flows.id.not_any[0]",
        "flows.operator",
    ]


# --- coverage of the contract ------------------------------------------------------


def _filter_messages() -> list[Any]:
    return [
        getattr(filters_pb2, name)
        for name in filters_pb2.DESCRIPTOR.message_types_by_name
        if not name.startswith("_")
    ]


#: Reached by no rule: Prefect's DeploymentFilter never reads concurrency_limit.
NEVER_COMPILED = {filters_pb2.DeploymentFilterConcurrencyLimit}


@pytest.mark.parametrize("message", _filter_messages(), ids=lambda m: m.DESCRIPTOR.name)
def test_every_field_of_every_filter_message_has_a_rule(message: Any) -> None:
    if message in filters.SPECIAL or message in NEVER_COMPILED:
        assert message not in filters.RULES
        return
    rules = filters.RULES[message]
    for field in message.DESCRIPTOR.fields:
        nested = (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and field.message_type.file is filters_pb2.DESCRIPTOR
        )
        if field.name == "operator" or (nested and field.name not in rules):
            assert field.name == "operator" or getattr(filters_pb2, field.message_type.name) in (
                *filters.RULES,
                *filters.SPECIAL,
            )
            continue
        assert field.name in rules, f"{message.DESCRIPTOR.name}.{field.name} has no rule"
    assert set(rules) <= {field.name for field in message.DESCRIPTOR.fields}
