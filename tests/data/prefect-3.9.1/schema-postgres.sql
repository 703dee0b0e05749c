-- Prefect 3.9.1 PostgreSQL 15 schema (alembic head 91e2b8f3d6a4), database prefect_probe.
-- Part 1: extension + enum types, verbatim from: pg_dump -h 127.0.0.1 -U postgres -s prefect_probe (the header section).
-- Part 2: verbatim output of: pg_dump -h 127.0.0.1 -U postgres -s -t flow -t flow_run -t task_run -t deployment -t work_queue -t work_pool prefect_probe
-- No triggers exist in the database (pg_trigger has no non-internal rows); no user-defined functions besides pg_trgm's.
-- Only these extensions are installed: pg_trgm 1.6, plpgsql 1.0.

-- ===================== Part 1 =====================
--
-- Name: pg_trgm; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;


--
-- Name: EXTENSION pg_trgm; Type: COMMENT; Schema: -; Owner: 
--

COMMENT ON EXTENSION pg_trgm IS 'text similarity measurement and index searching based on trigrams';


--
-- Name: deployment_status; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.deployment_status AS ENUM (
    'READY',
    'NOT_READY'
);


ALTER TYPE public.deployment_status OWNER TO postgres;

--
-- Name: state_type; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.state_type AS ENUM (
    'SCHEDULED',
    'PENDING',
    'RUNNING',
    'COMPLETED',
    'FAILED',
    'CANCELLED',
    'CRASHED',
    'PAUSED',
    'CANCELLING'
);


ALTER TYPE public.state_type OWNER TO postgres;

--
-- Name: work_pool_status; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.work_pool_status AS ENUM (
    'READY',
    'NOT_READY',
    'PAUSED'
);


ALTER TYPE public.work_pool_status OWNER TO postgres;

--
-- Name: work_queue_status; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.work_queue_status AS ENUM (
    'READY',
    'NOT_READY',
    'PAUSED'
);


ALTER TYPE public.work_queue_status OWNER TO postgres;

--
-- Name: worker_status; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.worker_status AS ENUM (
    'ONLINE',
    'OFFLINE'
);


ALTER TYPE public.worker_status OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

-- ===================== Part 2 =====================
--
-- PostgreSQL database dump
--

\restrict TJutyUQpyLt7icEv9jlnO2vyrGwKGCGetIiqe5V6QwG1Bzfp7cQfncxVSIbMcRu

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: deployment; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.deployment (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    name character varying NOT NULL,
    tags jsonb DEFAULT '[]'::jsonb NOT NULL,
    parameters jsonb DEFAULT '{}'::jsonb NOT NULL,
    flow_id uuid NOT NULL,
    infrastructure_document_id uuid,
    description text,
    parameter_openapi_schema jsonb,
    storage_document_id uuid,
    version character varying,
    infra_overrides jsonb DEFAULT '{}'::jsonb NOT NULL,
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
    status public.deployment_status DEFAULT 'NOT_READY'::public.deployment_status NOT NULL,
    concurrency_limit integer,
    concurrency_options jsonb,
    concurrency_limit_id uuid,
    labels jsonb,
    version_id uuid
);


ALTER TABLE public.deployment OWNER TO postgres;

--
-- Name: flow; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.flow (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    name character varying NOT NULL,
    tags jsonb DEFAULT '[]'::jsonb NOT NULL,
    labels jsonb
);


ALTER TABLE public.flow OWNER TO postgres;

--
-- Name: flow_run; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.flow_run (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    name character varying NOT NULL,
    state_type public.state_type,
    run_count integer DEFAULT 0 NOT NULL,
    expected_start_time timestamp with time zone,
    next_scheduled_start_time timestamp with time zone,
    start_time timestamp with time zone,
    end_time timestamp with time zone,
    total_run_time interval DEFAULT '00:00:00'::interval NOT NULL,
    flow_version character varying,
    parameters jsonb DEFAULT '{}'::jsonb NOT NULL,
    idempotency_key character varying,
    context jsonb DEFAULT '{}'::jsonb NOT NULL,
    empirical_policy jsonb DEFAULT '{}'::jsonb NOT NULL,
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
    job_variables jsonb DEFAULT '{}'::jsonb,
    deployment_version character varying,
    labels jsonb
);


ALTER TABLE public.flow_run OWNER TO postgres;

--
-- Name: task_run; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.task_run (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    name character varying NOT NULL,
    state_type public.state_type,
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
    empirical_policy jsonb DEFAULT '{}'::jsonb NOT NULL,
    task_inputs jsonb DEFAULT '{}'::jsonb NOT NULL,
    tags jsonb DEFAULT '[]'::jsonb NOT NULL,
    flow_run_id uuid,
    state_id uuid,
    state_name character varying,
    state_timestamp timestamp with time zone,
    flow_run_run_count integer DEFAULT 0 NOT NULL,
    labels jsonb
);


ALTER TABLE public.task_run OWNER TO postgres;

--
-- Name: work_pool; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.work_pool (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    name character varying NOT NULL,
    description character varying,
    type character varying NOT NULL,
    base_job_template jsonb DEFAULT '{}'::jsonb NOT NULL,
    is_paused boolean DEFAULT false NOT NULL,
    concurrency_limit integer,
    default_queue_id uuid,
    status public.work_pool_status DEFAULT 'NOT_READY'::public.work_pool_status NOT NULL,
    last_transitioned_status_at timestamp with time zone,
    last_status_event_id uuid,
    storage_configuration jsonb DEFAULT '{}'::jsonb NOT NULL
);


ALTER TABLE public.work_pool OWNER TO postgres;

--
-- Name: work_queue; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.work_queue (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    created timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    updated timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    name character varying NOT NULL,
    filter jsonb,
    description character varying DEFAULT ''::character varying NOT NULL,
    is_paused boolean DEFAULT false NOT NULL,
    concurrency_limit integer,
    last_polled timestamp with time zone,
    priority integer DEFAULT 1 NOT NULL,
    work_pool_id uuid NOT NULL,
    status public.work_queue_status DEFAULT 'NOT_READY'::public.work_queue_status NOT NULL
);


ALTER TABLE public.work_queue OWNER TO postgres;

--
-- Name: deployment pk_deployment; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT pk_deployment PRIMARY KEY (id);


--
-- Name: flow pk_flow; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow
    ADD CONSTRAINT pk_flow PRIMARY KEY (id);


--
-- Name: flow_run pk_flow_run; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow_run
    ADD CONSTRAINT pk_flow_run PRIMARY KEY (id);


--
-- Name: task_run pk_task_run; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.task_run
    ADD CONSTRAINT pk_task_run PRIMARY KEY (id);


--
-- Name: work_pool pk_work_pool; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.work_pool
    ADD CONSTRAINT pk_work_pool PRIMARY KEY (id);


--
-- Name: work_queue pk_work_queue; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.work_queue
    ADD CONSTRAINT pk_work_queue PRIMARY KEY (id);


--
-- Name: flow uq_flow__name; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow
    ADD CONSTRAINT uq_flow__name UNIQUE (name);


--
-- Name: work_pool uq_work_pool__name; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.work_pool
    ADD CONSTRAINT uq_work_pool__name UNIQUE (name);


--
-- Name: work_queue uq_work_queue__work_pool_id_name; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.work_queue
    ADD CONSTRAINT uq_work_queue__work_pool_id_name UNIQUE (work_pool_id, name);


--
-- Name: ix_deployment__created; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__created ON public.deployment USING btree (created);


--
-- Name: ix_deployment__flow_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__flow_id ON public.deployment USING btree (flow_id);


--
-- Name: ix_deployment__paused; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__paused ON public.deployment USING btree (paused);


--
-- Name: ix_deployment__updated; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__updated ON public.deployment USING btree (updated);


--
-- Name: ix_deployment__version_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__version_id ON public.deployment USING btree (version_id);


--
-- Name: ix_deployment__work_queue_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__work_queue_id ON public.deployment USING btree (work_queue_id);


--
-- Name: ix_deployment__work_queue_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_deployment__work_queue_name ON public.deployment USING btree (work_queue_name);


--
-- Name: ix_flow__created; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow__created ON public.flow USING btree (created);


--
-- Name: ix_flow__updated; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow__updated ON public.flow USING btree (updated);


--
-- Name: ix_flow_run__coalesce_start_time_expected_start_time_asc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time_asc ON public.flow_run USING btree (COALESCE(start_time, expected_start_time));


--
-- Name: ix_flow_run__coalesce_start_time_expected_start_time_desc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time_desc ON public.flow_run USING btree (COALESCE(start_time, expected_start_time) DESC);


--
-- Name: ix_flow_run__deployment_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__deployment_id ON public.flow_run USING btree (deployment_id);


--
-- Name: ix_flow_run__deployment_version; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__deployment_version ON public.flow_run USING btree (deployment_version);


--
-- Name: ix_flow_run__end_time_desc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__end_time_desc ON public.flow_run USING btree (end_time DESC);


--
-- Name: ix_flow_run__expected_start_time_desc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__expected_start_time_desc ON public.flow_run USING btree (expected_start_time DESC);


--
-- Name: ix_flow_run__flow_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__flow_id ON public.flow_run USING btree (flow_id);


--
-- Name: ix_flow_run__flow_version; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__flow_version ON public.flow_run USING btree (flow_version);


--
-- Name: ix_flow_run__infrastructure_document_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__infrastructure_document_id ON public.flow_run USING btree (infrastructure_document_id);


--
-- Name: ix_flow_run__name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__name ON public.flow_run USING btree (name);


--
-- Name: ix_flow_run__next_scheduled_start_time_asc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__next_scheduled_start_time_asc ON public.flow_run USING btree (next_scheduled_start_time);


--
-- Name: ix_flow_run__parent_task_run_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__parent_task_run_id ON public.flow_run USING btree (parent_task_run_id);


--
-- Name: ix_flow_run__schedule_id_scheduler; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__schedule_id_scheduler ON public.flow_run USING btree (deployment_id, ((created_by ->> 'id'::text)), next_scheduled_start_time) WHERE ((state_type = 'SCHEDULED'::public.state_type) AND (auto_scheduled = true));


--
-- Name: ix_flow_run__scheduler_deployment_id_auto_scheduled_next_schedu; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__scheduler_deployment_id_auto_scheduled_next_schedu ON public.flow_run USING btree (deployment_id, auto_scheduled, next_scheduled_start_time) WHERE (state_type = 'SCHEDULED'::public.state_type);


--
-- Name: ix_flow_run__start_time; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__start_time ON public.flow_run USING btree (start_time);


--
-- Name: ix_flow_run__state_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__state_id ON public.flow_run USING btree (state_id);


--
-- Name: ix_flow_run__state_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__state_name ON public.flow_run USING btree (state_name);


--
-- Name: ix_flow_run__state_timestamp; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__state_timestamp ON public.flow_run USING btree (state_timestamp);


--
-- Name: ix_flow_run__state_type; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__state_type ON public.flow_run USING btree (state_type);


--
-- Name: ix_flow_run__state_type_coalesce_start_time; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__state_type_coalesce_start_time ON public.flow_run USING btree (state_type, COALESCE(start_time, expected_start_time));


--
-- Name: ix_flow_run__updated; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__updated ON public.flow_run USING btree (updated);


--
-- Name: ix_flow_run__work_queue_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__work_queue_id ON public.flow_run USING btree (work_queue_id);


--
-- Name: ix_flow_run__work_queue_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_flow_run__work_queue_name ON public.flow_run USING btree (work_queue_name);


--
-- Name: ix_task_run__end_time_desc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__end_time_desc ON public.task_run USING btree (end_time DESC);


--
-- Name: ix_task_run__expected_start_time_desc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__expected_start_time_desc ON public.task_run USING btree (expected_start_time DESC);


--
-- Name: ix_task_run__flow_run_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__flow_run_id ON public.task_run USING btree (flow_run_id);


--
-- Name: ix_task_run__name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__name ON public.task_run USING btree (name);


--
-- Name: ix_task_run__next_scheduled_start_time_asc; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__next_scheduled_start_time_asc ON public.task_run USING btree (next_scheduled_start_time);


--
-- Name: ix_task_run__start_time; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__start_time ON public.task_run USING btree (start_time);


--
-- Name: ix_task_run__state_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__state_id ON public.task_run USING btree (state_id);


--
-- Name: ix_task_run__state_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__state_name ON public.task_run USING btree (state_name);


--
-- Name: ix_task_run__state_timestamp; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__state_timestamp ON public.task_run USING btree (state_timestamp);


--
-- Name: ix_task_run__state_type; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__state_type ON public.task_run USING btree (state_type);


--
-- Name: ix_task_run__state_type_start_time; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__state_type_start_time ON public.task_run USING btree (state_type, start_time);


--
-- Name: ix_task_run__updated; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_task_run__updated ON public.task_run USING btree (updated);


--
-- Name: ix_work_pool__type; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_work_pool__type ON public.work_pool USING btree (type);


--
-- Name: ix_work_pool__updated; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_work_pool__updated ON public.work_pool USING btree (updated);


--
-- Name: ix_work_queue__updated; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_work_queue__updated ON public.work_queue USING btree (updated);


--
-- Name: ix_work_queue__work_pool_id; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_work_queue__work_pool_id ON public.work_queue USING btree (work_pool_id);


--
-- Name: ix_work_queue__work_pool_id_priority; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX ix_work_queue__work_pool_id_priority ON public.work_queue USING btree (work_pool_id, priority);


--
-- Name: trgm_ix_deployment_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX trgm_ix_deployment_name ON public.deployment USING gin (name public.gin_trgm_ops);


--
-- Name: trgm_ix_flow_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX trgm_ix_flow_name ON public.flow USING gin (name public.gin_trgm_ops);


--
-- Name: trgm_ix_flow_run_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX trgm_ix_flow_run_name ON public.flow_run USING gin (name public.gin_trgm_ops);


--
-- Name: trgm_ix_task_run_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX trgm_ix_task_run_name ON public.task_run USING gin (name public.gin_trgm_ops);


--
-- Name: trgm_ix_work_queue_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX trgm_ix_work_queue_name ON public.work_queue USING gin (name public.gin_trgm_ops);


--
-- Name: uq_deployment__flow_id_name; Type: INDEX; Schema: public; Owner: postgres
--

CREATE UNIQUE INDEX uq_deployment__flow_id_name ON public.deployment USING btree (flow_id, name);


--
-- Name: uq_flow_run__flow_id_idempotency_key; Type: INDEX; Schema: public; Owner: postgres
--

CREATE UNIQUE INDEX uq_flow_run__flow_id_idempotency_key ON public.flow_run USING btree (flow_id, idempotency_key);


--
-- Name: uq_task_run__flow_run_id_task_key_dynamic_key; Type: INDEX; Schema: public; Owner: postgres
--

CREATE UNIQUE INDEX uq_task_run__flow_run_id_task_key_dynamic_key ON public.task_run USING btree (flow_run_id, task_key, dynamic_key);


--
-- Name: deployment fk_deployment__concurrency_limit_id__concurrency_limit_v2; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT fk_deployment__concurrency_limit_id__concurrency_limit_v2 FOREIGN KEY (concurrency_limit_id) REFERENCES public.concurrency_limit_v2(id) ON DELETE SET NULL;


--
-- Name: deployment fk_deployment__flow_id__flow; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT fk_deployment__flow_id__flow FOREIGN KEY (flow_id) REFERENCES public.flow(id) ON DELETE CASCADE;


--
-- Name: deployment fk_deployment__infrastructure_document_id__block_document; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT fk_deployment__infrastructure_document_id__block_document FOREIGN KEY (infrastructure_document_id) REFERENCES public.block_document(id) ON DELETE CASCADE;


--
-- Name: deployment fk_deployment__storage_document_id__block_document; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT fk_deployment__storage_document_id__block_document FOREIGN KEY (storage_document_id) REFERENCES public.block_document(id) ON DELETE CASCADE;


--
-- Name: deployment fk_deployment__work_queue_id__work_queue; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT fk_deployment__work_queue_id__work_queue FOREIGN KEY (work_queue_id) REFERENCES public.work_queue(id) ON DELETE SET NULL;


--
-- Name: flow_run fk_flow_run__flow_id__flow; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow_run
    ADD CONSTRAINT fk_flow_run__flow_id__flow FOREIGN KEY (flow_id) REFERENCES public.flow(id) ON DELETE CASCADE;


--
-- Name: flow_run fk_flow_run__infrastructure_document_id__block_document; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow_run
    ADD CONSTRAINT fk_flow_run__infrastructure_document_id__block_document FOREIGN KEY (infrastructure_document_id) REFERENCES public.block_document(id) ON DELETE CASCADE;


--
-- Name: flow_run fk_flow_run__parent_task_run_id__task_run; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow_run
    ADD CONSTRAINT fk_flow_run__parent_task_run_id__task_run FOREIGN KEY (parent_task_run_id) REFERENCES public.task_run(id) ON DELETE SET NULL;


--
-- Name: flow_run fk_flow_run__state_id__flow_run_state; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow_run
    ADD CONSTRAINT fk_flow_run__state_id__flow_run_state FOREIGN KEY (state_id) REFERENCES public.flow_run_state(id) ON DELETE SET NULL;


--
-- Name: flow_run fk_flow_run__work_queue_id__work_queue; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.flow_run
    ADD CONSTRAINT fk_flow_run__work_queue_id__work_queue FOREIGN KEY (work_queue_id) REFERENCES public.work_queue(id) ON DELETE SET NULL;


--
-- Name: task_run fk_task_run__flow_run_id__flow_run; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.task_run
    ADD CONSTRAINT fk_task_run__flow_run_id__flow_run FOREIGN KEY (flow_run_id) REFERENCES public.flow_run(id) ON DELETE CASCADE;


--
-- Name: work_pool fk_work_pool__default_queue_id__work_queue; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.work_pool
    ADD CONSTRAINT fk_work_pool__default_queue_id__work_queue FOREIGN KEY (default_queue_id) REFERENCES public.work_queue(id) ON DELETE RESTRICT;


--
-- Name: work_queue fk_work_queue__work_pool_id__work_pool; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.work_queue
    ADD CONSTRAINT fk_work_queue__work_pool_id__work_pool FOREIGN KEY (work_pool_id) REFERENCES public.work_pool(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict TJutyUQpyLt7icEv9jlnO2vyrGwKGCGetIiqe5V6QwG1Bzfp7cQfncxVSIbMcRu


-- ===================== psql \dT+ state_type =====================
--                                           List of data types
--  Schema |    Name    | Internal name | Size |  Elements  |  Owner   | Access privileges | Description 
-- --------+------------+---------------+------+------------+----------+-------------------+-------------
--  public | state_type | state_type    | 4    | SCHEDULED +| postgres |                   | 
--         |            |               |      | PENDING   +|          |                   | 
--         |            |               |      | RUNNING   +|          |                   | 
--         |            |               |      | COMPLETED +|          |                   | 
--         |            |               |      | FAILED    +|          |                   | 
--         |            |               |      | CANCELLED +|          |                   | 
--         |            |               |      | CRASHED   +|          |                   | 
--         |            |               |      | PAUSED    +|          |                   | 
--         |            |               |      | CANCELLING |          |                   | 
-- (1 row)
-- 
