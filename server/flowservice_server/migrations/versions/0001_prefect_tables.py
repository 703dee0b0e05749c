"""Prefect 3.9.1's flow, flow_run, task_run, deployment, work_queue and work_pool tables.

The DDL reproduces what Prefect's own migrations leave behind (alembic heads
27d8f4e1a6c9 on SQLite, 91e2b8f3d6a4 on PostgreSQL): the same table, column,
constraint and index names, types, defaults and storage formats, so rows are
interchangeable with a Prefect database. Foreign keys to tables outside these
six (flow_run_state, block_document, concurrency_limit_v2) are left out.
The DDL differs per dialect exactly as Prefect's does, so it is written out
per dialect rather than derived from one model.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import logging

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

# --- SQLite ----------------------------------------------------------------------

_SQLITE_UUID_V4 = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))),2) || '-' || substr('89ab',abs(random()) % 4 + 1, 1) || "
    "substr(lower(hex(randomblob(2))),2) || '-' || lower(hex(randomblob(6))))"
)
_SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f000', 'now'))"
_SQLITE_BASE = (
    f"id CHAR(36) DEFAULT ({_SQLITE_UUID_V4}) NOT NULL, "
    f"created DATETIME DEFAULT {_SQLITE_NOW} NOT NULL, "
    f"updated DATETIME DEFAULT {_SQLITE_NOW} NOT NULL, "
    "name VARCHAR NOT NULL, "
)

SQLITE_DDL = [
    f"""CREATE TABLE flow ({_SQLITE_BASE}
        tags JSON DEFAULT '[]' NOT NULL,
        labels JSON,
        CONSTRAINT pk_flow PRIMARY KEY (id),
        CONSTRAINT uq_flow__name UNIQUE (name))""",
    "CREATE INDEX ix_flow__updated ON flow (updated)",
    "CREATE INDEX ix_flow__created ON flow (created)",
    "CREATE INDEX ix_flow_name_case_insensitive ON flow (name COLLATE NOCASE)",
    f"""CREATE TABLE work_pool ({_SQLITE_BASE}
        description VARCHAR,
        type VARCHAR NOT NULL,
        base_job_template JSON DEFAULT '{{}}' NOT NULL,
        is_paused BOOLEAN DEFAULT '0' NOT NULL,
        concurrency_limit INTEGER,
        default_queue_id CHAR(36),
        status VARCHAR(9) DEFAULT 'NOT_READY' NOT NULL,
        last_transitioned_status_at DATETIME,
        last_status_event_id CHAR(36),
        storage_configuration JSON DEFAULT '{{}}' NOT NULL,
        CONSTRAINT pk_work_pool PRIMARY KEY (id),
        CONSTRAINT uq_work_pool__name UNIQUE (name),
        CONSTRAINT fk_work_pool__default_queue_id__work_queue FOREIGN KEY (default_queue_id)
            REFERENCES work_queue (id) ON DELETE RESTRICT)""",
    "CREATE INDEX ix_work_pool__type ON work_pool (type)",
    "CREATE INDEX ix_work_pool__updated ON work_pool (updated)",
    f"""CREATE TABLE work_queue ({_SQLITE_BASE}
        filter JSON,
        description VARCHAR DEFAULT ('') NOT NULL,
        is_paused BOOLEAN DEFAULT '0' NOT NULL,
        concurrency_limit INTEGER,
        last_polled DATETIME,
        priority INTEGER DEFAULT '1' NOT NULL,
        work_pool_id CHAR(36) NOT NULL,
        status VARCHAR(9) DEFAULT 'NOT_READY' NOT NULL,
        CONSTRAINT pk_work_queue PRIMARY KEY (id),
        CONSTRAINT uq_work_queue__work_pool_id_name UNIQUE (work_pool_id, name),
        CONSTRAINT fk_work_queue__work_pool_id__work_pool FOREIGN KEY (work_pool_id)
            REFERENCES work_pool (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_work_queue__work_pool_id ON work_queue (work_pool_id)",
    "CREATE INDEX ix_work_queue__work_pool_id_priority ON work_queue (work_pool_id, priority)",
    "CREATE INDEX ix_work_queue__updated ON work_queue (updated)",
    f"""CREATE TABLE deployment ({_SQLITE_BASE}
        tags JSON DEFAULT '[]' NOT NULL,
        parameters JSON DEFAULT '{{}}' NOT NULL,
        flow_id CHAR(36) NOT NULL,
        description TEXT,
        infrastructure_document_id CHAR(36),
        parameter_openapi_schema JSON,
        storage_document_id CHAR(36),
        version VARCHAR,
        infra_overrides JSON DEFAULT '{{}}' NOT NULL,
        path VARCHAR,
        entrypoint VARCHAR,
        work_queue_name VARCHAR,
        created_by JSON,
        updated_by JSON,
        work_queue_id CHAR(36),
        pull_steps JSON,
        enforce_parameter_schema BOOLEAN DEFAULT '0' NOT NULL,
        last_polled DATETIME,
        paused BOOLEAN DEFAULT '0' NOT NULL,
        status VARCHAR(9) DEFAULT 'NOT_READY' NOT NULL,
        concurrency_limit INTEGER,
        concurrency_options JSON,
        concurrency_limit_id CHAR(36),
        labels JSON,
        version_id CHAR(36),
        CONSTRAINT pk_deployment PRIMARY KEY (id),
        CONSTRAINT fk_deployment__work_queue_id__work_queue FOREIGN KEY (work_queue_id)
            REFERENCES work_queue (id) ON DELETE SET NULL,
        CONSTRAINT fk_deployment__flow_id__flow FOREIGN KEY (flow_id)
            REFERENCES flow (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_deployment__work_queue_name ON deployment (work_queue_name)",
    "CREATE INDEX ix_deployment__created ON deployment (created)",
    "CREATE UNIQUE INDEX uq_deployment__flow_id_name ON deployment (flow_id, name)",
    "CREATE INDEX ix_deployment__updated ON deployment (updated)",
    "CREATE INDEX ix_deployment_name_case_insensitive ON deployment (name)",
    "CREATE INDEX ix_deployment__flow_id ON deployment (flow_id)",
    "CREATE INDEX ix_deployment__work_queue_id ON deployment (work_queue_id)",
    "CREATE INDEX ix_deployment__paused ON deployment (paused)",
    "CREATE INDEX ix_deployment__version_id ON deployment (version_id)",
    f"""CREATE TABLE flow_run ({_SQLITE_BASE}
        state_type VARCHAR(9),
        run_count INTEGER DEFAULT '0' NOT NULL,
        expected_start_time DATETIME,
        next_scheduled_start_time DATETIME,
        start_time DATETIME,
        end_time DATETIME,
        total_run_time DATETIME DEFAULT '0' NOT NULL,
        flow_version VARCHAR,
        parameters JSON DEFAULT '{{}}' NOT NULL,
        idempotency_key VARCHAR,
        context JSON DEFAULT '{{}}' NOT NULL,
        empirical_policy JSON DEFAULT '{{}}' NOT NULL,
        tags JSON DEFAULT '[]' NOT NULL,
        auto_scheduled BOOLEAN DEFAULT '0' NOT NULL,
        flow_id CHAR(36) NOT NULL,
        deployment_id CHAR(36),
        parent_task_run_id CHAR(36),
        state_id CHAR(36),
        state_name VARCHAR,
        infrastructure_document_id CHAR(36),
        work_queue_name VARCHAR,
        state_timestamp DATETIME,
        created_by JSON,
        infrastructure_pid VARCHAR,
        work_queue_id CHAR(36),
        job_variables JSON DEFAULT '{{}}',
        deployment_version VARCHAR,
        labels JSON,
        CONSTRAINT pk_flow_run PRIMARY KEY (id),
        CONSTRAINT fk_flow_run__work_queue_id__work_queue FOREIGN KEY (work_queue_id)
            REFERENCES work_queue (id) ON DELETE SET NULL,
        CONSTRAINT fk_flow_run__parent_task_run_id__task_run FOREIGN KEY (parent_task_run_id)
            REFERENCES task_run (id) ON DELETE SET NULL,
        CONSTRAINT fk_flow_run__flow_id__flow FOREIGN KEY (flow_id)
            REFERENCES flow (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_flow_run__work_queue_id ON flow_run (work_queue_id)",
    "CREATE INDEX ix_flow_run__infrastructure_document_id ON flow_run (infrastructure_document_id)",
    "CREATE INDEX ix_flow_run__end_time_desc ON flow_run (end_time)",
    "CREATE INDEX ix_flow_run__work_queue_name ON flow_run (work_queue_name)",
    "CREATE INDEX ix_flow_run__name ON flow_run (name)",
    "CREATE INDEX ix_flow_run__state_timestamp ON flow_run (state_timestamp)",
    "CREATE INDEX ix_flow_run__next_scheduled_start_time_asc ON flow_run (next_scheduled_start_time)",
    "CREATE INDEX ix_flow_run_name_case_insensitive ON flow_run (name)",
    "CREATE INDEX ix_flow_run__state_id ON flow_run (state_id)",
    "CREATE INDEX ix_flow_run__state_type ON flow_run (state_type)",
    "CREATE INDEX ix_flow_run__flow_id ON flow_run (flow_id)",
    "CREATE INDEX ix_flow_run__expected_start_time_desc ON flow_run (expected_start_time)",
    "CREATE INDEX ix_flow_run__start_time ON flow_run (start_time)",
    "CREATE INDEX ix_flow_run__state_name ON flow_run (state_name)",
    "CREATE UNIQUE INDEX uq_flow_run__flow_id_idempotency_key ON flow_run (flow_id, idempotency_key)",
    "CREATE INDEX ix_flow_run__updated ON flow_run (updated)",
    "CREATE INDEX ix_flow_run__parent_task_run_id ON flow_run (parent_task_run_id)",
    "CREATE INDEX ix_flow_run__flow_version ON flow_run (flow_version)",
    "CREATE INDEX ix_flow_run__deployment_version ON flow_run (deployment_version)",
    """CREATE INDEX ix_flow_run__scheduler_deployment_id_auto_scheduled_next_schedu
        ON flow_run (deployment_id, auto_scheduled, next_scheduled_start_time)
        WHERE state_type = 'SCHEDULED'""",
    """CREATE INDEX ix_flow_run__schedule_id_scheduler
        ON flow_run (deployment_id, json_extract(created_by, '$.id'), next_scheduled_start_time)
        WHERE state_type = 'SCHEDULED' AND auto_scheduled = 1""",
    "CREATE INDEX ix_flow_run__deployment_id ON flow_run (deployment_id)",
    """CREATE INDEX ix_flow_run__state_type_coalesce_start_time
        ON flow_run (state_type, coalesce(start_time, expected_start_time))""",
    f"""CREATE TABLE task_run ({_SQLITE_BASE}
        state_type VARCHAR(9),
        run_count INTEGER DEFAULT '0' NOT NULL,
        expected_start_time DATETIME,
        next_scheduled_start_time DATETIME,
        start_time DATETIME,
        end_time DATETIME,
        total_run_time DATETIME DEFAULT '0' NOT NULL,
        task_key VARCHAR NOT NULL,
        dynamic_key VARCHAR NOT NULL,
        cache_key VARCHAR,
        cache_expiration DATETIME,
        task_version VARCHAR,
        empirical_policy JSON DEFAULT '{{}}' NOT NULL,
        task_inputs JSON DEFAULT '{{}}' NOT NULL,
        tags JSON DEFAULT '[]' NOT NULL,
        flow_run_id CHAR(36),
        state_id CHAR(36),
        state_name VARCHAR,
        state_timestamp DATETIME,
        flow_run_run_count INTEGER DEFAULT '0' NOT NULL,
        labels JSON,
        CONSTRAINT pk_task_run PRIMARY KEY (id),
        CONSTRAINT fk_task_run__flow_run_id__flow_run FOREIGN KEY (flow_run_id)
            REFERENCES flow_run (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_task_run__expected_start_time_desc ON task_run (expected_start_time)",
    "CREATE INDEX ix_task_run__next_scheduled_start_time_asc ON task_run (next_scheduled_start_time)",
    "CREATE INDEX ix_task_run__state_type ON task_run (state_type)",
    "CREATE INDEX ix_task_run__updated ON task_run (updated)",
    "CREATE INDEX ix_task_run__end_time_desc ON task_run (end_time)",
    "CREATE INDEX ix_task_run__state_id ON task_run (state_id)",
    """CREATE UNIQUE INDEX uq_task_run__flow_run_id_task_key_dynamic_key
        ON task_run (flow_run_id, task_key, dynamic_key)""",
    "CREATE INDEX ix_task_run_name_case_insensitive ON task_run (name)",
    "CREATE INDEX ix_task_run__state_timestamp ON task_run (state_timestamp)",
    "CREATE INDEX ix_task_run__flow_run_id ON task_run (flow_run_id)",
    "CREATE INDEX ix_task_run__start_time ON task_run (start_time)",
    "CREATE INDEX ix_task_run__state_name ON task_run (state_name)",
    "CREATE INDEX ix_task_run__name ON task_run (name)",
    "CREATE INDEX ix_task_run__state_type_start_time ON task_run (state_type, start_time)",
]

# --- PostgreSQL ------------------------------------------------------------------

_PG_BASE = (
    "id uuid DEFAULT gen_random_uuid() NOT NULL, "
    "created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL, "
    "updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL, "
    "name character varying NOT NULL, "
)

PG_DDL = [
    """CREATE TYPE state_type AS ENUM ('SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED',
        'FAILED', 'CANCELLED', 'CRASHED', 'PAUSED', 'CANCELLING')""",
    "CREATE TYPE deployment_status AS ENUM ('READY', 'NOT_READY')",
    "CREATE TYPE work_pool_status AS ENUM ('READY', 'NOT_READY', 'PAUSED')",
    "CREATE TYPE work_queue_status AS ENUM ('READY', 'NOT_READY', 'PAUSED')",
    f"""CREATE TABLE flow ({_PG_BASE}
        tags jsonb DEFAULT '[]'::jsonb NOT NULL,
        labels jsonb,
        CONSTRAINT pk_flow PRIMARY KEY (id),
        CONSTRAINT uq_flow__name UNIQUE (name))""",
    "CREATE INDEX ix_flow__created ON flow USING btree (created)",
    "CREATE INDEX ix_flow__updated ON flow USING btree (updated)",
    f"""CREATE TABLE work_pool ({_PG_BASE}
        description character varying,
        type character varying NOT NULL,
        base_job_template jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        is_paused boolean DEFAULT false NOT NULL,
        concurrency_limit integer,
        default_queue_id uuid,
        status work_pool_status DEFAULT 'NOT_READY'::work_pool_status NOT NULL,
        last_transitioned_status_at timestamp with time zone,
        last_status_event_id uuid,
        storage_configuration jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        CONSTRAINT pk_work_pool PRIMARY KEY (id),
        CONSTRAINT uq_work_pool__name UNIQUE (name))""",
    "CREATE INDEX ix_work_pool__type ON work_pool USING btree (type)",
    "CREATE INDEX ix_work_pool__updated ON work_pool USING btree (updated)",
    f"""CREATE TABLE work_queue ({_PG_BASE}
        filter jsonb,
        description character varying DEFAULT ''::character varying NOT NULL,
        is_paused boolean DEFAULT false NOT NULL,
        concurrency_limit integer,
        last_polled timestamp with time zone,
        priority integer DEFAULT 1 NOT NULL,
        work_pool_id uuid NOT NULL,
        status work_queue_status DEFAULT 'NOT_READY'::work_queue_status NOT NULL,
        CONSTRAINT pk_work_queue PRIMARY KEY (id),
        CONSTRAINT uq_work_queue__work_pool_id_name UNIQUE (work_pool_id, name))""",
    "CREATE INDEX ix_work_queue__updated ON work_queue USING btree (updated)",
    "CREATE INDEX ix_work_queue__work_pool_id ON work_queue USING btree (work_pool_id)",
    """CREATE INDEX ix_work_queue__work_pool_id_priority
        ON work_queue USING btree (work_pool_id, priority)""",
    f"""CREATE TABLE deployment ({_PG_BASE}
        tags jsonb DEFAULT '[]'::jsonb NOT NULL,
        parameters jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        flow_id uuid NOT NULL,
        infrastructure_document_id uuid,
        description text,
        parameter_openapi_schema jsonb,
        storage_document_id uuid,
        version character varying,
        infra_overrides jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        path character varying,
        entrypoint character varying,
        work_queue_name character varying,
        created_by jsonb,
        updated_by jsonb,
        work_queue_id uuid,
        pull_steps jsonb,
        enforce_parameter_schema boolean DEFAULT false NOT NULL,
        last_polled timestamp with time zone,
        paused boolean DEFAULT false NOT NULL,
        status deployment_status DEFAULT 'NOT_READY'::deployment_status NOT NULL,
        concurrency_limit integer,
        concurrency_options jsonb,
        concurrency_limit_id uuid,
        labels jsonb,
        version_id uuid,
        CONSTRAINT pk_deployment PRIMARY KEY (id))""",
    "CREATE INDEX ix_deployment__created ON deployment USING btree (created)",
    "CREATE INDEX ix_deployment__flow_id ON deployment USING btree (flow_id)",
    "CREATE INDEX ix_deployment__paused ON deployment USING btree (paused)",
    "CREATE INDEX ix_deployment__updated ON deployment USING btree (updated)",
    "CREATE INDEX ix_deployment__version_id ON deployment USING btree (version_id)",
    "CREATE INDEX ix_deployment__work_queue_id ON deployment USING btree (work_queue_id)",
    "CREATE INDEX ix_deployment__work_queue_name ON deployment USING btree (work_queue_name)",
    "CREATE UNIQUE INDEX uq_deployment__flow_id_name ON deployment USING btree (flow_id, name)",
    f"""CREATE TABLE flow_run ({_PG_BASE}
        state_type state_type,
        run_count integer DEFAULT 0 NOT NULL,
        expected_start_time timestamp with time zone,
        next_scheduled_start_time timestamp with time zone,
        start_time timestamp with time zone,
        end_time timestamp with time zone,
        total_run_time interval DEFAULT '00:00:00'::interval NOT NULL,
        flow_version character varying,
        parameters jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        idempotency_key character varying,
        context jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        empirical_policy jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        tags jsonb DEFAULT '[]'::jsonb NOT NULL,
        auto_scheduled boolean DEFAULT false NOT NULL,
        flow_id uuid NOT NULL,
        deployment_id uuid,
        parent_task_run_id uuid,
        state_id uuid,
        state_name character varying,
        infrastructure_document_id uuid,
        work_queue_name character varying,
        state_timestamp timestamp with time zone,
        created_by jsonb,
        infrastructure_pid character varying,
        work_queue_id uuid,
        job_variables jsonb DEFAULT '{{}}'::jsonb,
        deployment_version character varying,
        labels jsonb,
        CONSTRAINT pk_flow_run PRIMARY KEY (id))""",
    """CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time_asc
        ON flow_run USING btree (COALESCE(start_time, expected_start_time))""",
    """CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time_desc
        ON flow_run USING btree (COALESCE(start_time, expected_start_time) DESC)""",
    "CREATE INDEX ix_flow_run__deployment_id ON flow_run USING btree (deployment_id)",
    "CREATE INDEX ix_flow_run__deployment_version ON flow_run USING btree (deployment_version)",
    "CREATE INDEX ix_flow_run__end_time_desc ON flow_run USING btree (end_time DESC)",
    """CREATE INDEX ix_flow_run__expected_start_time_desc
        ON flow_run USING btree (expected_start_time DESC)""",
    "CREATE INDEX ix_flow_run__flow_id ON flow_run USING btree (flow_id)",
    "CREATE INDEX ix_flow_run__flow_version ON flow_run USING btree (flow_version)",
    """CREATE INDEX ix_flow_run__infrastructure_document_id
        ON flow_run USING btree (infrastructure_document_id)""",
    "CREATE INDEX ix_flow_run__name ON flow_run USING btree (name)",
    """CREATE INDEX ix_flow_run__next_scheduled_start_time_asc
        ON flow_run USING btree (next_scheduled_start_time)""",
    "CREATE INDEX ix_flow_run__parent_task_run_id ON flow_run USING btree (parent_task_run_id)",
    """CREATE INDEX ix_flow_run__schedule_id_scheduler ON flow_run USING btree
        (deployment_id, ((created_by ->> 'id'::text)), next_scheduled_start_time)
        WHERE ((state_type = 'SCHEDULED'::state_type) AND (auto_scheduled = true))""",
    """CREATE INDEX ix_flow_run__scheduler_deployment_id_auto_scheduled_next_schedu
        ON flow_run USING btree (deployment_id, auto_scheduled, next_scheduled_start_time)
        WHERE (state_type = 'SCHEDULED'::state_type)""",
    "CREATE INDEX ix_flow_run__start_time ON flow_run USING btree (start_time)",
    "CREATE INDEX ix_flow_run__state_id ON flow_run USING btree (state_id)",
    "CREATE INDEX ix_flow_run__state_name ON flow_run USING btree (state_name)",
    "CREATE INDEX ix_flow_run__state_timestamp ON flow_run USING btree (state_timestamp)",
    "CREATE INDEX ix_flow_run__state_type ON flow_run USING btree (state_type)",
    """CREATE INDEX ix_flow_run__state_type_coalesce_start_time
        ON flow_run USING btree (state_type, COALESCE(start_time, expected_start_time))""",
    "CREATE INDEX ix_flow_run__updated ON flow_run USING btree (updated)",
    "CREATE INDEX ix_flow_run__work_queue_id ON flow_run USING btree (work_queue_id)",
    "CREATE INDEX ix_flow_run__work_queue_name ON flow_run USING btree (work_queue_name)",
    """CREATE UNIQUE INDEX uq_flow_run__flow_id_idempotency_key
        ON flow_run USING btree (flow_id, idempotency_key)""",
    f"""CREATE TABLE task_run ({_PG_BASE}
        state_type state_type,
        run_count integer DEFAULT 0 NOT NULL,
        expected_start_time timestamp with time zone,
        next_scheduled_start_time timestamp with time zone,
        start_time timestamp with time zone,
        end_time timestamp with time zone,
        total_run_time interval DEFAULT '00:00:00'::interval NOT NULL,
        task_key character varying NOT NULL,
        dynamic_key character varying NOT NULL,
        cache_key character varying,
        cache_expiration timestamp with time zone,
        task_version character varying,
        empirical_policy jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        task_inputs jsonb DEFAULT '{{}}'::jsonb NOT NULL,
        tags jsonb DEFAULT '[]'::jsonb NOT NULL,
        flow_run_id uuid,
        state_id uuid,
        state_name character varying,
        state_timestamp timestamp with time zone,
        flow_run_run_count integer DEFAULT 0 NOT NULL,
        labels jsonb,
        CONSTRAINT pk_task_run PRIMARY KEY (id))""",
    "CREATE INDEX ix_task_run__end_time_desc ON task_run USING btree (end_time DESC)",
    """CREATE INDEX ix_task_run__expected_start_time_desc
        ON task_run USING btree (expected_start_time DESC)""",
    "CREATE INDEX ix_task_run__flow_run_id ON task_run USING btree (flow_run_id)",
    "CREATE INDEX ix_task_run__name ON task_run USING btree (name)",
    """CREATE INDEX ix_task_run__next_scheduled_start_time_asc
        ON task_run USING btree (next_scheduled_start_time)""",
    "CREATE INDEX ix_task_run__start_time ON task_run USING btree (start_time)",
    "CREATE INDEX ix_task_run__state_id ON task_run USING btree (state_id)",
    "CREATE INDEX ix_task_run__state_name ON task_run USING btree (state_name)",
    "CREATE INDEX ix_task_run__state_timestamp ON task_run USING btree (state_timestamp)",
    "CREATE INDEX ix_task_run__state_type ON task_run USING btree (state_type)",
    """CREATE INDEX ix_task_run__state_type_start_time
        ON task_run USING btree (state_type, start_time)""",
    "CREATE INDEX ix_task_run__updated ON task_run USING btree (updated)",
    """CREATE UNIQUE INDEX uq_task_run__flow_run_id_task_key_dynamic_key
        ON task_run USING btree (flow_run_id, task_key, dynamic_key)""",
    # The two reference cycles (flow_run <-> task_run, work_pool <-> work_queue)
    # need every table in place before the keys, as pg_dump does it.
    """ALTER TABLE deployment ADD CONSTRAINT fk_deployment__flow_id__flow
        FOREIGN KEY (flow_id) REFERENCES flow(id) ON DELETE CASCADE""",
    """ALTER TABLE deployment ADD CONSTRAINT fk_deployment__work_queue_id__work_queue
        FOREIGN KEY (work_queue_id) REFERENCES work_queue(id) ON DELETE SET NULL""",
    """ALTER TABLE flow_run ADD CONSTRAINT fk_flow_run__flow_id__flow
        FOREIGN KEY (flow_id) REFERENCES flow(id) ON DELETE CASCADE""",
    """ALTER TABLE flow_run ADD CONSTRAINT fk_flow_run__parent_task_run_id__task_run
        FOREIGN KEY (parent_task_run_id) REFERENCES task_run(id) ON DELETE SET NULL""",
    """ALTER TABLE flow_run ADD CONSTRAINT fk_flow_run__work_queue_id__work_queue
        FOREIGN KEY (work_queue_id) REFERENCES work_queue(id) ON DELETE SET NULL""",
    """ALTER TABLE task_run ADD CONSTRAINT fk_task_run__flow_run_id__flow_run
        FOREIGN KEY (flow_run_id) REFERENCES flow_run(id) ON DELETE CASCADE""",
    """ALTER TABLE work_pool ADD CONSTRAINT fk_work_pool__default_queue_id__work_queue
        FOREIGN KEY (default_queue_id) REFERENCES work_queue(id) ON DELETE RESTRICT""",
    """ALTER TABLE work_queue ADD CONSTRAINT fk_work_queue__work_pool_id__work_pool
        FOREIGN KEY (work_pool_id) REFERENCES work_pool(id) ON DELETE CASCADE""",
]

#: Trigram indexes make `like` filters fast on PostgreSQL; they need pg_trgm.
PG_TRGM_INDEXES = [
    f"CREATE INDEX trgm_ix_{table}_name ON {table} USING gin (name gin_trgm_ops)"
    for table in ("deployment", "flow", "flow_run", "task_run", "work_queue")
]

_TABLES = ("task_run", "flow_run", "deployment", "work_queue", "work_pool", "flow")
_PG_ENUMS = ("state_type", "deployment_status", "work_pool_status", "work_queue_status")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _run(SQLITE_DDL)
        return
    _run(PG_DDL)
    _create_trigram_indexes()


def _run(statements: list[str]) -> None:
    # Driver-level execution: the DDL holds `%` and `::`, which are not parameters.
    bind = op.get_bind()
    for statement in statements:
        bind.exec_driver_sql(statement)


def _create_trigram_indexes() -> None:
    """Create pg_trgm's indexes when the extension is (or can be) installed; else go on without."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as error:  # noqa: BLE001  # any refusal means: no trigram indexes
        log.warning(
            "pg_trgm is not available (%s); `like` filters on names will scan instead of "
            "using trigram indexes",
            str(getattr(error, "orig", None) or error).splitlines()[0],
        )
        return
    _run(PG_TRGM_INDEXES)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _run([f"DROP TABLE {table}" for table in _TABLES])
        return
    _run([f"DROP TABLE {table} CASCADE" for table in _TABLES])
    _run([f"DROP TYPE {enum}" for enum in _PG_ENUMS])
