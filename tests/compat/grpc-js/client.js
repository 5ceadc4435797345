// A gRPC client that shares no code with grpcio/C-core (@grpc/grpc-js, pure JavaScript),
// calling what Hubble's CLI calls: ServerStatus, GetFlows (number, follow-less) with its
// response metadata, and a GetFlows with a malformed filter. Prints one JSON object.
//   node client.js <host:port> <proto dir> <number>
'use strict';
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [target, protoDir, numberArg] = process.argv.slice(2);
const number = parseInt(numberArg, 10);
const def = loader.loadSync('observer/observer.proto', {
  includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
});
const observer = new (grpc.loadPackageDefinition(def).observer.Observer)(target, grpc.credentials.createInsecure());
const out = {};

function status() {
  return new Promise((resolve, reject) => observer.ServerStatus({}, (err, r) => (err ? reject(err) : resolve(r))));
}

function flows(request) {
  return new Promise((resolve) => {
    const got = { messages: 0, flows: [], version: null, error: null };
    const call = observer.GetFlows(request);
    call.on('metadata', (md) => { got.version = md.get('hubble-server-version')[0] || null; });
    call.on('data', (resp) => {
      got.messages += 1;
      if (resp.flow) got.flows.push({ time: resp.flow.time, uuid: resp.flow.uuid, verdict: resp.flow.verdict,
        source: resp.flow.source && resp.flow.source.pod_name });
    });
    call.on('error', (err) => { got.error = { code: err.code, details: err.details }; resolve(got); });
    call.on('end', () => resolve(got));
  });
}

(async () => {
  const st = await status();
  out.status = { num_flows: Number(st.num_flows), max_flows: Number(st.max_flows) };
  const t0 = Date.now();
  const all = await flows({ number });
  out.seconds = (Date.now() - t0) / 1000;
  out.get_flows = { messages: all.messages, version: all.version, error: all.error,
    first: all.flows[0], last: all.flows[all.flows.length - 1],
    uuids: all.flows.map((f) => f.uuid) };
  const bad = await flows({ whitelist: [{ source_ip: ['10.0.0.0/33'] }] });
  out.bad_request = bad.error;
  // exit only once stdout (a pipe: written asynchronously) has taken it all
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
})().catch((err) => { process.stderr.write(String(err) + '\n'); process.exit(1); });
