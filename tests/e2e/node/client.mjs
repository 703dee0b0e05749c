#!/usr/bin/env node
// FlowService from a Node.js client: the scenario of tests/e2e/test_node.py.
//
//   node client.mjs HOST:PORT SCENARIO_JSON
//
// SCENARIO_JSON names the flows that the Python test seeded with one flow run
// each (Node cannot write flow runs: FlowService has no RPC for them):
//   {"seeded": {"early": RUN, "lateA": RUN, "lateB": RUN}}
//   RUN = {"flowId": UUID, "flowName": str, "startTime": RFC 3339, "stateType": str}
// with early < lateA < lateB by start time and only lateB FAILED.
//
// It loads the .proto files from the repository at run time (no generated
// code), runs every FlowService RPC, asserts on each answer with node:assert,
// prints a JSON summary of what it observed on stdout and exits 0; any
// unexpected answer exits non-zero with the failed assertion on stderr.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

// A watchdog: a failed assertion ends the process, but grpc-js can keep it
// alive after client.close() (e.g. once a request failed to serialize); never
// outlive this. unref(): the timer alone does not keep the process running.
setTimeout(() => {
  console.error('client.mjs: still running after 45 s');
  process.exit(2);
}, 45_000).unref();

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTOS = path.resolve(HERE, '../../../protos');
// google/api/annotations.proto and http.proto, which the service imports for its
// HTTP rules.
const GOOGLEAPIS = path.resolve(HERE, '../../../third_party/googleapis');
const DEADLINE_MS = 10_000;

// --- loading the contract ------------------------------------------------------

// Options that make proto-loader's objects pleasant and lossless:
// - longs: String  int64 fields (CountFlowsResponse.count, Timestamp.seconds)
//                  come back as decimal strings, not Long objects;
// - enums: String  enums come back by name ("FLOW_SORT_NAME_DESC"); either a
//                  name or a number may be sent;
// - defaults: true absent scalars and repeated fields come back as ''/0/[],
//                  absent message fields as null (so Flow.labels is null
//                  when the flow has no labels object);
// - oneofs: true   a google.protobuf.Value also says which of its fields is
//                  set, in `kind` (used by fromStruct below).
// Field names are camelCase (updateMask, flowRuns, startTime), as proto-loader
// converts them unless keepCase is set. google/protobuf/*.proto are
// proto-loader's own copies; our directory and the vendored google/api need naming.
//
// Beware: requests are converted with protobufjs' fromObject, which ignores
// what it does not know instead of failing. A snake_case key copied from the
// proto comments' JSON (`flow_runs`, `update_mask`) is silently dropped, and
// so is the filter or mask it held; an unknown enum name
// ('FLOW_SORT_NAME_DSC') is sent as 0 (unspecified: the default order).
// Hence the helpers below for the well-known types.
const definition = protoLoader.loadSync('flowservice/v1/flow_service.proto', {
  includeDirs: [PROTOS, GOOGLEAPIS],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { FlowService } = grpc.loadPackageDefinition(definition).flowservice.v1;

// The google.rpc messages of the `grpc-status-details-bin` trailer. They are
// not in protos/, so the few this service sends are declared here (field
// numbers as in googleapis' google/rpc/*.proto); `Any` is wire-compatible
// with google.protobuf.Any.
const RPC_TYPES = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message ResourceInfo {
    string resource_type = 1; string resource_name = 2; string owner = 3; string description = 4;
  }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`).root;

// --- writing the well-known types -----------------------------------------------

// A google.protobuf.ListValue of strings, for the filters' `any` fields:
// `{values: [{stringValue: 'FAILED'}]}`. A plain array (the JSON form) fails
// client-side with INTERNAL ("ListValue.values: array expected");
// `{values: []}` (or `{}`) is an explicitly empty list, which matches
// nothing; leaving the field out (or null) adds no condition.
const anyOf = (...strings) => ({ values: strings.map((s) => ({ stringValue: s })) });

// A google.protobuf.Struct from a flat JS object of strings, numbers and
// booleans (all that Flow.labels may hold): every value is wrapped in a
// google.protobuf.Value naming its kind. Passing `labels: {env: 'dev'}`
// directly sends an EMPTY Struct (no `fields` key), creating the flow with
// `{}` labels, without an error.
const KINDS = { string: 'stringValue', number: 'numberValue', boolean: 'boolValue' };
const struct = (object) => ({
  fields: Object.fromEntries(
    Object.entries(object).map(([key, value]) => [key, { [KINDS[typeof value]]: value }]),
  ),
});

// ...and back: `kind` (from oneofs: true) names the field that is set. null
// stays null (no labels object at all).
const fromStruct = (message) =>
  message &&
  Object.fromEntries(
    Object.entries(message.fields).map(([key, value]) => [key, value[value.kind]]),
  );

// A google.protobuf.Timestamp from an RFC 3339 string (millisecond precision,
// all a JS Date has): whole seconds since the epoch, as a string because the
// field is int64, plus nanoseconds. proto-loader has no Timestamp
// conversion: an RFC 3339 string (the JSON form) fails client-side with
// INTERNAL "object expected", and a Date is sent as the epoch (1970-01-01).
const timestamp = (rfc3339) => {
  const ms = Date.parse(rfc3339);
  assert.ok(Number.isFinite(ms), `not a timestamp: ${rfc3339}`);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (((ms % 1000) + 1000) % 1000) * 1e6 };
};
const plusMs = (rfc3339, ms) => new Date(Date.parse(rfc3339) + ms).toISOString();

// ...and back, to compare (BigInt: seconds is an int64 string).
const nanosOf = (ts) => BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos);

// --- calling ------------------------------------------------------------------------

const [address, scenarioJson] = process.argv.slice(2);
assert.ok(address && scenarioJson, 'usage: node client.mjs HOST:PORT SCENARIO_JSON');
const { early, lateA, lateB } = JSON.parse(scenarioJson).seeded;

const client = new FlowService(address, grpc.credentials.createInsecure());

// grpc-js is callback-based; promisify one unary call, with a deadline.
const rpc = (method, request) =>
  new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });

// A server-streaming call's responses, collected until the stream ends.
const collect = (method, request) =>
  new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    const responses = [];
    const call = client[method](request, { deadline });
    call.on('data', (response) => responses.push(response));
    call.on('error', reject);
    call.on('end', () => resolve(responses));
  });

// The google.rpc.Status of a failed call, its details unpacked by type name:
// {code, message, details: {BadRequest: {...}, ErrorInfo: {...}, ...}, resourceInfos: [...]}
// (details keeps the last detail of each type; resourceInfos all ResourceInfos).
const decodeStatus = (error) => {
  const [bytes] = error.metadata.get('grpc-status-details-bin');
  assert.ok(bytes, `no grpc-status-details-bin trailer on: ${error.message}`);
  const status = RPC_TYPES.lookupType('google.rpc.Status').decode(bytes);
  const details = {};
  const resourceInfos = []; // a batch's NOT_FOUND has one per missing flow
  for (const { typeUrl, value } of status.details) {
    const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1); // type.googleapis.com/google.rpc.X
    const type = RPC_TYPES.lookupType(name);
    details[type.name] = type.toObject(type.decode(value), { defaults: true });
    if (type.name === 'ResourceInfo') resourceInfos.push(details[type.name]);
  }
  return { code: status.code, message: status.message, details, resourceInfos };
};

// The call fails with gRPC status `code` and a matching google.rpc.Status.
const expectError = async (call, code) => {
  const error = await call.then(
    (response) => assert.fail(`expected code ${code}, got ${JSON.stringify(response)}`),
    (failure) => failure,
  );
  assert.equal(error.code, code, error.message);
  const status = decodeStatus(error);
  assert.equal(status.code, code);
  assert.equal(status.details.ErrorInfo?.domain, 'flowservice.v1');
  return status;
};

const names = ({ flows }) => flows.map((flow) => flow.name);
const violations = (status) => status.details.BadRequest.fieldViolations.map((v) => v.field);

// --- the scenario -------------------------------------------------------------------

const summary = {};

// CreateFlow: tags in order, labels of each kind; no labels at all gives
// `labels: null`; the same name again returns the stored flow untouched.
const etl = await rpc('CreateFlow', {
  name: 'node-etl',
  tags: ['db', 'nightly'],
  labels: struct({ env: 'dev', retries: 3, critical: true }),
});
assert.equal(etl.created, true);
assert.match(etl.flow.id, /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/);
assert.deepEqual(etl.flow.tags, ['db', 'nightly']);
assert.deepEqual(fromStruct(etl.flow.labels), { critical: true, env: 'dev', retries: 3 });
assert.equal(etl.flow.labels.fields.retries.kind, 'numberValue');

const plain = await rpc('CreateFlow', { name: 'node-plain' });
assert.equal(plain.created, true);
assert.deepEqual(plain.flow.tags, []);
assert.equal(plain.flow.labels, null);

const again = await rpc('CreateFlow', { name: 'node-etl', tags: ['ignored'] });
assert.equal(again.created, false);
assert.deepEqual(again.flow, etl.flow);

summary.create = {
  etl: { id: etl.flow.id, tags: etl.flow.tags, labels: fromStruct(etl.flow.labels) },
  plain: { id: plain.flow.id, tags: plain.flow.tags, labels: fromStruct(plain.flow.labels) },
  againCreated: again.created,
};

// ReadFlow (by an upper-case, unhyphenated id: the server accepts both
// forms and answers with the canonical one) and ReadFlowByName.
const byId = await rpc('ReadFlow', { id: etl.flow.id.replaceAll('-', '').toUpperCase() });
assert.deepEqual(byId.flow, etl.flow);
const byName = await rpc('ReadFlowByName', { name: 'node-plain' });
assert.deepEqual(byName.flow, plain.flow);
summary.read = { byId: byId.flow.id, byName: byName.flow.id };

// ReadFlows through the seeded flow runs. Both Timestamp bounds are
// inclusive: `after` exactly lateA's start keeps lateA; `before` 100 ms past
// it keeps lateA too (so nanos reach the server) but not lateB (250 ms past).
const sinceLateA = await rpc('ReadFlows', {
  flowRuns: { startTime: { after: timestamp(lateA.startTime) } },
  sort: 'FLOW_SORT_NAME_DESC',
});
assert.deepEqual(names(sinceLateA), [lateB.flowName, lateA.flowName]);

const untilLateA = await rpc('ReadFlows', {
  flowRuns: { startTime: { before: timestamp(plusMs(lateA.startTime, 100)) } },
});
assert.deepEqual(names(untilLateA), [early.flowName, lateA.flowName]);

// OPERATOR_OR with an `any` list: a FAILED run, or one that started no later
// than early's.
const failedOrEarly = await rpc('ReadFlows', {
  flowRuns: {
    operator: 'OPERATOR_OR',
    state: { type: { any: anyOf('FAILED') } },
    startTime: { before: timestamp(early.startTime) },
  },
  sort: 'FLOW_SORT_NAME_ASC',
});
assert.deepEqual(names(failedOrEarly), [early.flowName, lateB.flowName]);

// ...and on the flow itself: named node-plain, or tagged nightly.
const plainOrNightly = await rpc('ReadFlows', {
  flows: {
    operator: 'OPERATOR_OR',
    name: { any: anyOf('node-plain') },
    tags: { all: ['nightly'] },
  },
});
assert.deepEqual(names(plainOrNightly), ['node-etl', 'node-plain']);

// A name filter without `any` (`name: {}`) adds no condition; an empty `any`
// matches nothing.
const everyName = names(
  await rpc('ReadFlows', { flows: { name: {} }, sort: 'FLOW_SORT_NAME_DESC' }),
);
const allNames = [early, lateA, lateB].map((run) => run.flowName).concat('node-etl', 'node-plain');
assert.deepEqual(everyName, allNames.toSorted().reverse());
const noName = names(await rpc('ReadFlows', { flows: { name: { any: anyOf() } } }));
assert.deepEqual(noName, []);

// `limit` is proto3 `optional`: 0 is sent (and returns nothing), unlike an
// unset one.
const limited = names(await rpc('ReadFlows', { sort: 'FLOW_SORT_NAME_DESC', limit: 2 }));
assert.deepEqual(limited, everyName.slice(0, 2));
assert.deepEqual(names(await rpc('ReadFlows', { limit: 0 })), []);

// A ListValue element that is not a string is INVALID_ARGUMENT, naming it.
const badElement = await expectError(
  rpc('ReadFlows', {
    flows: { id: { any: { values: [{ stringValue: etl.flow.id }, { numberValue: 1 }] } } },
  }),
  grpc.status.INVALID_ARGUMENT,
);
assert.deepEqual(violations(badElement), ['flows.id.any[1]']);

// Page tokens: each page names the next; the walk visits every flow once,
// in order, and `totalSize` (int64, a string) counts them all.
const walked = [];
let pageToken = '';
let pages = 0;
let totalSize;
do {
  const page = await rpc('ReadFlows', {
    sort: 'FLOW_SORT_NAME_DESC',
    limit: 2,
    pageToken,
    includeTotalSize: true,
  });
  walked.push(...names(page));
  totalSize = page.totalSize;
  pageToken = page.nextPageToken;
  pages += 1;
} while (pageToken);
assert.deepEqual(walked, everyName);
assert.equal(totalSize, '5');
const foreignToken = await expectError(
  rpc('ReadFlows', { limit: 2, pageToken: (await rpc('ReadFlows', { limit: 2 })).nextPageToken, sort: 'FLOW_SORT_NAME_DESC' }),
  grpc.status.INVALID_ARGUMENT,
);
assert.deepEqual(violations(foreignToken), ['page_token']);

// StreamFlows: every flow, `batchSize` per response, in sort order.
const batches = await collect('StreamFlows', { sort: 'FLOW_SORT_NAME_DESC', batchSize: 2 });
assert.deepEqual(batches.map((response) => response.flows.length), [2, 2, 1]);
assert.deepEqual(batches.flatMap(names), everyName);

// latestFlowRun: each seeded flow has one run, so its latest run is that run.
const failed = { state: { type: { any: anyOf('FAILED') } } };
const latestFailed = names(await rpc('ReadFlows', { latestFlowRun: failed }));
assert.deepEqual(latestFailed, names(await rpc('ReadFlows', { flowRuns: failed })));

summary.lists = {
  walked,
  pages,
  totalSize,
  foreignToken: violations(foreignToken),
  batchSizes: batches.map((response) => response.flows.length),
  latestFailed,
};

summary.readFlows = {
  sinceLateA: names(sinceLateA),
  untilLateA: names(untilLateA),
  failedOrEarly: names(failedOrEarly),
  plainOrNightly: names(plainOrNightly),
  everyNameDesc: everyName,
  emptyAny: noName,
  limit2: limited,
  badElement: violations(badElement),
};

// CountFlows: int64 as a string; `flowRuns: {}` (present but empty) means
// "has at least one flow run".
const total = (await rpc('CountFlows', {})).count;
const withRuns = (await rpc('CountFlows', { flowRuns: {} })).count;
assert.equal(total, '5');
assert.equal(withRuns, '3');
summary.count = { total, withRuns };

// UpdateFlow: tags replace the old ones whole (duplicates kept). proto3
// cannot tell `tags: []` from no tags, so an empty list is written only under
// `updateMask: {paths: ['tags']}`; without it `updated` alone changes.
const tagged = (await rpc('UpdateFlow', { id: plain.flow.id, tags: ['from-node', 'from-node'] }))
  .flow;
assert.deepEqual(tagged.tags, ['from-node', 'from-node']);

const unmasked = (await rpc('UpdateFlow', { id: etl.flow.id, tags: [] })).flow;
assert.deepEqual(unmasked.tags, ['db', 'nightly']);
assert.ok(nanosOf(unmasked.updated) > nanosOf(etl.flow.updated), 'updated did not move');
assert.deepEqual(unmasked.created, etl.flow.created);

const cleared = (
  await rpc('UpdateFlow', { id: etl.flow.id, tags: [], updateMask: { paths: ['tags'] } })
).flow;
assert.deepEqual(cleared.tags, []);
assert.deepEqual(fromStruct(cleared.labels), fromStruct(etl.flow.labels));

const badMask = await expectError(
  rpc('UpdateFlow', { id: etl.flow.id, updateMask: { paths: ['name'] } }),
  grpc.status.INVALID_ARGUMENT,
);
assert.deepEqual(violations(badMask), ['update_mask.paths[0]']);

summary.update = {
  plainTags: tagged.tags,
  etlTagsWithoutMask: unmasked.tags,
  etlTagsWithMask: cleared.tags,
  badMask: violations(badMask),
};

// DeleteFlow (a seeded flow, with its run), then NOT_FOUND with a
// ResourceInfo naming it, for reading and for deleting again.
assert.deepEqual(await rpc('DeleteFlow', { id: early.flowId }), {});
const gone = await expectError(rpc('ReadFlow', { id: early.flowId }), grpc.status.NOT_FOUND);
assert.equal(gone.details.ResourceInfo.resourceType, 'flowservice.v1.Flow');
assert.equal(gone.details.ResourceInfo.resourceName, early.flowId);
const goneAgain = await expectError(rpc('DeleteFlow', { id: early.flowId }), grpc.status.NOT_FOUND);
assert.equal((await rpc('CountFlows', {})).count, '4');
summary.delete = {
  id: early.flowId,
  readCode: gone.code,
  resourceInfo: gone.details.ResourceInfo,
  reason: gone.details.ErrorInfo.reason,
  deleteAgainCode: goneAgain.code,
};

// An id that is not a UUID: INVALID_ARGUMENT naming `id`.
const invalid = await expectError(
  rpc('ReadFlow', { id: 'not-a-uuid' }),
  grpc.status.INVALID_ARGUMENT,
);
assert.deepEqual(violations(invalid), ['id']);
summary.invalidId = { code: invalid.code, fields: violations(invalid) };

// BatchCreateFlows: get-or-create each, answers in request order; a name
// given twice is one flow, created once.
const batch = await rpc('BatchCreateFlows', {
  requests: [
    { name: 'node-batch-b', tags: ['x'] },
    { name: 'node-etl', tags: ['ignored'] },
    { name: 'node-batch-a', labels: struct({ n: 1 }) },
    { name: 'node-batch-b' },
  ],
});
const answers = batch.responses.map((r) => [r.flow.name, r.created]);
assert.deepEqual(answers, [
  ['node-batch-b', true],
  ['node-etl', false],
  ['node-batch-a', true],
  ['node-batch-b', false],
]);
assert.deepEqual(batch.responses[3].flow, batch.responses[0].flow);
const batchB = batch.responses[0].flow;

// BatchGetFlows: ids' flows in order, then names', repeats answered each time;
// all or nothing, with a ResourceInfo per missing name.
const got = await rpc('BatchGetFlows', {
  ids: [etl.flow.id],
  names: ['node-batch-a', 'node-batch-b', 'node-batch-a'],
});
assert.deepEqual(names(got), ['node-etl', 'node-batch-a', 'node-batch-b', 'node-batch-a']);
assert.deepEqual(got.flows[2], batchB);
const missing = await expectError(
  rpc('BatchGetFlows', { names: ['node-batch-a', 'nope', 'nope-2'] }),
  grpc.status.NOT_FOUND,
);
assert.deepEqual(
  missing.resourceInfos.map((info) => info.resourceName),
  ['nope', 'nope-2'],
);
assert.equal(missing.details.ErrorInfo.metadata.missing, '2');

summary.batch = {
  created: answers,
  got: names(got),
  missing: missing.resourceInfos.map((info) => info.resourceName),
};

// Etags: every flow has one; a conditional write with the current etag
// succeeds and moves it, the old one is then stale (ABORTED, nothing written);
// a value not shaped like an etag is INVALID_ARGUMENT naming `etag`.
assert.match(batchB.etag, /^[A-Za-z0-9_-]{16}$/);
const written = (await rpc('UpdateFlow', { id: batchB.id, tags: ['y'], etag: batchB.etag })).flow;
assert.deepEqual(written.tags, ['y']);
assert.notEqual(written.etag, batchB.etag);
const stale = await expectError(
  rpc('UpdateFlow', { id: batchB.id, tags: ['z'], etag: batchB.etag }),
  grpc.status.ABORTED,
);
assert.equal(stale.details.ErrorInfo.reason, 'ETAG_MISMATCH');
assert.deepEqual((await rpc('ReadFlow', { id: batchB.id })).flow, written);
const malformed = await expectError(
  rpc('DeleteFlow', { id: batchB.id, etag: 'not an etag' }),
  grpc.status.INVALID_ARGUMENT,
);
assert.deepEqual(violations(malformed), ['etag']);
await expectError(rpc('DeleteFlow', { id: batchB.id, etag: batchB.etag }), grpc.status.ABORTED);
assert.deepEqual(await rpc('DeleteFlow', { id: batchB.id, etag: written.etag }), {});
assert.deepEqual(await rpc('DeleteFlow', { id: batch.responses[2].flow.id }), {});

summary.etag = {
  staleCode: stale.code,
  staleReason: stale.details.ErrorInfo.reason,
  malformed: violations(malformed),
};

// WatchFlows: a server stream that never ends by itself. `watch` reads it one
// response at a time; the call has a deadline, so a read that waits for an
// event that never comes fails with DEADLINE_EXCEEDED instead of hanging.
// With oneofs: true, `event` names the field of the `event` oneof that is set
// ('existing', 'created', ...); the oneof's other fields are null
// (defaults: true). Bookmarks (a fresh token for an idle watch, every 30 s by
// default) may come at any time and report no change, so they are skipped.
const watch = (request) => {
  const deadline = new Date(Date.now() + DEADLINE_MS);
  const call = client.WatchFlows(request, { deadline });
  const received = [];
  const waiting = [];
  let failure = null;
  const settle = () => {
    while (waiting.length && (received.length || failure)) {
      const { resolve, reject } = waiting.shift();
      if (received.length) resolve(received.shift());
      else reject(failure);
    }
  };
  call.on('data', (response) => {
    if (response.event !== 'bookmark') received.push(response);
    settle();
  });
  call.on('error', (error) => {
    failure = error;
    settle();
  });
  call.on('end', () => {
    failure ??= new Error('WatchFlows ended, but a watch never ends by itself');
    settle();
  });
  return {
    // The next response: [event name, its value, the response].
    next: () =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        settle();
      }).then((response) => {
        assert.ok(response.event, `no event in ${JSON.stringify(response)}`);
        assert.match(response.resumeToken, /^[A-Za-z0-9_-]+$/);
        return [response.event, response[response.event], response];
      }),
    // Cancel the call; resolves with the error it then ends with (CANCELLED).
    cancel: () =>
      new Promise((resolve) => {
        if (failure) return resolve(failure);
        call.on('error', resolve);
        call.cancel();
      }),
  };
};

// List, then watch, in one call: every flow as it is (`existing`, by name),
// then `initialStateDone`, all carrying the snapshot's token.
const watcher = watch({ sendInitialState: true });
const existing = [];
let snapshot;
for (;;) {
  const [kind, flow, response] = await watcher.next();
  snapshot ??= response.resumeToken;
  assert.equal(response.resumeToken, snapshot, 'the initial state has one position');
  if (kind === 'initialStateDone') break;
  assert.equal(kind, 'existing', JSON.stringify(response));
  existing.push(flow.name);
}
assert.deepEqual(existing, names(await rpc('ReadFlows', { sort: 'FLOW_SORT_NAME_ASC' })));

// Then the changes as they commit: one event per write, in order, each with a
// new token.
const watched = (await rpc('CreateFlow', { name: 'node-watched', tags: ['v'] })).flow;
const rewritten = (await rpc('UpdateFlow', { id: watched.id, tags: ['w'] })).flow;
assert.deepEqual(await rpc('DeleteFlow', { id: watched.id }), {});
const changes = [];
let resumeToken = snapshot;
for (const expected of ['created', 'updated', 'deleted']) {
  const [kind, flow, response] = await watcher.next();
  assert.equal(kind, expected, JSON.stringify(response));
  assert.equal(flow.id, watched.id);
  assert.notEqual(response.resumeToken, resumeToken);
  resumeToken = response.resumeToken;
  changes.push([kind, flow.name, flow.tags]);
}
assert.deepEqual(changes[0][2], watched.tags);
assert.deepEqual(changes[1][2], rewritten.tags);
const cancelled = await watcher.cancel();
assert.equal(cancelled.code, grpc.status.CANCELLED, cancelled.message);

// Resume with the last token: a flow created while nobody watched arrives,
// once. It is deleted after the new watch has delivered its `created`, so
// the next event must be that `deleted`: a repeated `created` (or an old
// change) would come in between.
const missed = (await rpc('CreateFlow', { name: 'node-missed' })).flow;
const resumed = watch({ resumeToken });
const afterResume = [await resumed.next()];
assert.deepEqual(await rpc('DeleteFlow', { id: missed.id }), {});
afterResume.push(await resumed.next());
for (const [, flow] of afterResume) assert.equal(flow.id, missed.id);
assert.equal((await resumed.cancel()).code, grpc.status.CANCELLED);

summary.watch = {
  existing,
  changes,
  cancelledCode: cancelled.code,
  afterResume: afterResume.map(([kind, flow]) => [kind, flow.name]),
};

client.close();
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
