// The page under test: calls FlowService from the browser with @connectrpc/connect-web,
// over the Connect protocol (JSON or binary) or gRPC-Web, and shows what it got as JSON
// in #result. The service is described at run time from a FileDescriptorSet the test
// serves beside the page (descriptors.binpb), so no code is generated.
// Query parameters: api (the server's HTTP address), protocol (connect | grpcweb),
// binary (1: Connect with protobuf binary instead of JSON).
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

const params = new URLSearchParams(location.search);
const result = document.getElementById("result");

function show(value) {
  result.textContent = JSON.stringify(value);
  result.dataset.done = "1";
}

async function run() {
  const bytes = new Uint8Array(await (await fetch("descriptors.binpb")).arrayBuffer());
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  const service = registry.getService("flowservice.v1.FlowService");
  const baseUrl = params.get("api");
  const transport =
    params.get("protocol") === "grpcweb"
      ? createGrpcWebTransport({ baseUrl })
      : createConnectTransport({ baseUrl, useBinaryFormat: params.get("binary") === "1" });
  const client = createClient(service, transport);
  const shown = {};
  const step = (name) => {
    result.textContent = `running: ${name}`;
  };

  step("ReadFlows");
  const page = await client.readFlows(
    { flows: { tags: { all: ["prod"] } }, includeTotalSize: true },
    { timeoutMs: 10000 },
  );
  shown.readFlows = page.flows.map((flow) => flow.name);
  shown.totalSize = String(page.totalSize);

  step("StreamFlows");
  shown.streamFlows = [];
  for await (const batch of client.streamFlows({ batchSize: 2 })) {
    shown.streamFlows.push(batch.flows.map((flow) => flow.name));
  }

  step("WatchFlows");
  // List-then-watch: the flows as they are, then the marker; then stop watching.
  // A watch never ends by itself: the page cancels it, as a user leaving would.
  shown.watchFlows = [];
  const watching = new AbortController();
  try {
    const events = client.watchFlows({ sendInitialState: true }, { signal: watching.signal });
    for await (const event of events) {
      const kind = event.event.case;
      shown.watchFlows.push(kind === "existing" ? `existing ${event.event.value.name}` : kind);
      if (kind === "initialStateDone") watching.abort();
    }
  } catch (error) {
    if (!watching.signal.aborted) throw error;
  }

  step("ReadFlow");
  try {
    await client.readFlow({ id: "nope" });
    shown.error = "none";
  } catch (thrown) {
    const error = ConnectError.from(thrown);
    shown.error = {
      code: Code[error.code],
      message: error.rawMessage,
      details: error.details.map((detail) => detail.type),
    };
  }
  show(shown);
}

run().catch((error) => show({ failed: String(error), stack: String(error.stack) }));
