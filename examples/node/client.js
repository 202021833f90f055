#!/usr/bin/env node
// A Node.js client of Sightline. It loads the contract (protos/sightline/v1/*.proto) at run time with
// @grpc/proto-loader, so nothing is generated ahead of time, lists the public specifications and recognises one
// image file, then prints one JSON object on stdout.
//
//   node client.js --server 127.0.0.1:50051 --spec colors-v1 ../../samples/red.png
//   node client.js --server 127.0.0.1:50051 --list
//
// Options: --server HOST:PORT (default 127.0.0.1:50051), --spec ID or --version-id ID, --list (only list the
// specifications), --show-discarded, --deadline-ms N (default 30000), --tls (TLS with the system's roots),
// --protos DIR (the folder that holds sightline/v1/, default: the repository's protos/).
//
// Output: {"server": ..., "specifications": [{"id", "name"}, ...], "result": {...}}; "result" has the v0.7 JSON
// shape (snake_case field names, as in the .proto files). A failed call prints {"error": {"code", "message"}} on
// stderr and exits with 1.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_PROTOS = path.resolve(__dirname, '..', '..', 'protos');

// keepCase: field names as in the .proto files (label_name, not labelName), hence the v0.7 JSON.
// The google/protobuf well-known types (Struct, Timestamp, Any) come with proto-loader; google/rpc/status.proto,
// where a proto imports it, sits in the protos/ folder itself.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** The sightline.v1 package, loaded from every .proto file in DIR/sightline/v1. */
function loadSightline(protosDir = DEFAULT_PROTOS) {
  const versionDir = path.join(protosDir, 'sightline', 'v1');
  const files = fs
    .readdirSync(versionDir)
    .filter((name) => name.endsWith('.proto'))
    .sort()
    .map((name) => path.join('sightline', 'v1', name));
  const definition = protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [protosDir] });
  return grpc.loadPackageDefinition(definition).sightline.v1;
}

/** A RecognitionService client on SERVER (host:port). */
function connect(sightline, server, { tls = false } = {}) {
  const credentials = tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
  return new sightline.RecognitionService(server, credentials);
}

/** Calls a unary METHOD of CLIENT with REQUEST, as a promise, under a deadline. */
function unary(client, method, request, deadlineMs) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + deadlineMs);
    client[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** The public specifications (and the caller's own), one page of up to 100. */
async function listSpecifications(client, deadlineMs = 30000) {
  const response = await unary(client, 'ListSpecifications', { offset: 0, limit: 100 }, deadlineMs);
  return (response.results || []).map((spec) => ({ id: spec.id, name: spec.name }));
}

/** Recognises the encoded image IMAGE (a Buffer) with a specification (specId) or a version (versionId). */
async function recognize(client, image, { specId, versionId, showDiscarded = false, deadlineMs = 30000 }) {
  const request = {
    inputs: [{ image: { content: image } }],
    show_discarded: showDiscarded,
    ...(versionId ? { version_id: versionId } : { spec_id: specId }),
  };
  return unary(client, 'Recognize', request, deadlineMs);
}

// Video frames: the place for StreamRecognize.
// loadSightline() loads the bidirectional StreamRecognize RPC with the rest (its messages are in streams.proto):
// client.StreamRecognize() returns a duplex stream; write the configuration message first, then one message per
// frame, read one result per frame with stream.on('data', ...), and call stream.end() after the last frame. This
// example does not stream yet: a `streamFrames(client, frames, options)` function belongs here, next to
// recognize(), with a --stream option in main() that feeds it.

function usage(message) {
  process.stderr.write(`${message}\nusage: node client.js [--server HOST:PORT] (--spec ID | --version-id ID) IMAGE\n`);
  process.stderr.write('       node client.js [--server HOST:PORT] --list\n');
  process.exit(2);
}

async function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      server: { type: 'string', default: '127.0.0.1:50051' },
      spec: { type: 'string' },
      'version-id': { type: 'string' },
      list: { type: 'boolean', default: false },
      'show-discarded': { type: 'boolean', default: false },
      'deadline-ms': { type: 'string', default: '30000' },
      tls: { type: 'boolean', default: false },
      protos: { type: 'string', default: DEFAULT_PROTOS },
    },
  });
  const deadlineMs = Number.parseInt(values['deadline-ms'], 10);
  if (!Number.isFinite(deadlineMs) || deadlineMs <= 0) usage('--deadline-ms must be a positive number');
  if (!values.list) {
    if (positionals.length !== 1) usage('give exactly one image file');
    if (Boolean(values.spec) === Boolean(values['version-id'])) usage('give exactly one of --spec or --version-id');
  }

  const sightline = loadSightline(path.resolve(values.protos));
  const client = connect(sightline, values.server, { tls: values.tls });
  try {
    const output = { server: values.server, specifications: await listSpecifications(client, deadlineMs) };
    if (!values.list) {
      const image = fs.readFileSync(positionals[0]);
      output.result = await recognize(client, image, {
        specId: values.spec,
        versionId: values['version-id'],
        showDiscarded: values['show-discarded'],
        deadlineMs,
      });
    }
    process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
  } finally {
    client.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error) => {
    const code = error.code !== undefined ? grpc.status[error.code] || String(error.code) : 'CLIENT_ERROR';
    process.stderr.write(`${JSON.stringify({ error: { code, message: error.details || error.message } })}\n`);
    process.exit(1);
  });
}

module.exports = { loadSightline, connect, listSpecifications, recognize };
