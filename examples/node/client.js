#!/usr/bin/env node
// A Node.js client of Sightline. It loads the contract (protos/sightline/v1/*.proto) at run time with
// @grpc/proto-loader, so nothing is generated ahead of time. It has two modes.
//
// One image (unary Recognize): lists the public specifications and recognises one image file, then prints one
// JSON object on stdout.
//
//   node client.js --server 127.0.0.1:50051 --spec colors-v1 ../../samples/red.png
//   node client.js --server 127.0.0.1:50051 --list
//
// A stream of frames (bidirectional StreamRecognize), --stream: sends a StreamConfig, then frames, half-closes, and
// prints one JSON line per result as it arrives, then one summary line.
//
//   node client.js --stream --spec colors-v1 a.jpg b.png c.jpg            # each file once, as encoded bytes
//   node client.js --stream --spec colors-v1 --count 90 a.jpg b.png       # 90 frames, cycling over the files
//   node client.js --stream --spec colors-v1 --raw 640x480 --color 230,20,25 --count 300 --fps 30
//
// Options of both modes: --server HOST:PORT (default 127.0.0.1:50051), --spec ID or --version-id ID,
// --show-discarded, --deadline-ms N (unary: default 30000; stream: none unless given), --tls (TLS with the
// system's roots), --protos DIR (the folder that holds sightline/v1/, default: the repository's protos/).
// Unary only: --list (only list the specifications).
// Stream only: --max-in-flight N (1 to 64; default: the server's, 4), --ordering ordered|as-completed,
// --drop-policy block|drop-oldest|drop-newest, --max-latency-ms N, --tracking (the StreamConfig); the frames:
// image files (their encoded bytes), or --raw WIDTHxHEIGHT with --color R,G,B (generated RGB24 pixels of one
// colour, default 128,128,128; repeat --color to cycle over colours); --count N (frames to send; default: each file
// once, or 30 raw frames; 0: until Ctrl-C); --fps F (pace frames at F a second; default 0: as fast as gRPC flow
// control lets them go).
//
// Output, unary: {"server": ..., "specifications": [{"id", "name"}, ...], "result": {...}}; "result" is the v0.7
// JSON of the result, the same as the Python client's (sightline recognize --json, protobuf's MessageToDict with
// the .proto field names and fields without presence printed): snake_case names, every list even when empty
// ("discarded": []), optional fields only when set, float scores written as their shortest float32 decimal
// (0.99999994, not 0.9999999403953552).
// Output, stream: one line per frame, in the order the results arrive:
//   {"frame_id": 0, "status": "OK", "label": "red", "score": 0.99, "latency_ms": 8.1,
//    "timing": {"queue_ms", "preprocess_ms", "triton_ms", "postprocess_ms", "total_ms"}}
// ("label" and "score": the first output's best prediction, null where there is none; SKIPPED frames add
// "skip_reason", ERROR frames "error": {"code", "message"}), then
//   {"summary": {"frames", "sent", "ok", "skipped", "errors", "elapsed_s", "fps", "latency_p50_ms",
//                "latency_p99_ms", "drain_waits"}}
// "latency_ms" is measured here: from the frame's write() to its result. The percentiles are over OK frames (null
// without any); "fps" is results a second; "drain_waits" counts the times write() returned false and the client
// waited for 'drain' (backpressure). Ctrl-C stops sending and half-closes: the results of the frames sent still
// come, then the summary; a second Ctrl-C cancels the stream.
//
// A failed call (a non-OK status, also of a stream) prints {"error": {"code", "message"}} on stderr and exits with
// 1; so does a stream that ends without answering every frame once. A frame answered ERROR does not end the stream
// (it is counted in "errors"); the exit status is then still 0.
'use strict';

const { once } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { setImmediate: nextTurn, setTimeout: sleep } = require('node:timers/promises');
const { parseArgs } = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const DEFAULT_PROTOS = path.resolve(__dirname, '..', '..', 'protos');

// keepCase: field names as in the .proto files (label_name, not labelName), hence the v0.7 JSON.
// oneofs: false, because with true proto-loader adds a virtual field per oneof naming its set member, and every
// proto3 `optional` field is a oneof of its own: a result would carry "_label_id": "label_id", "_score": "score" ...
// The google/protobuf well-known types (Struct, Timestamp, Any) come with proto-loader; google/rpc/status.proto,
// where a proto imports it, sits in the protos/ folder itself.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: false,
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

/** The sightline.v1 message types (protobufjs reflection) from every .proto file in DIR/sightline/v1. */
function loadTypes(protosDir = DEFAULT_PROTOS) {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.resolve(protosDir, target);
  const versionDir = path.join(protosDir, 'sightline', 'v1');
  const files = fs.readdirSync(versionDir).filter((name) => name.endsWith('.proto'));
  root.loadSync(files.sort().map((name) => path.join('sightline', 'v1', name)), { keepCase: true });
  root.resolveAll();
  return root;
}

/** VALUE, a float32 read into a double, as the shortest decimal that reads back as the same float32 (protobuf's
 * Python json_format does the same, from 6 significant digits up); NaN and infinities as their JSON strings. */
function shortestFloat(value) {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  const single = Math.fround(value);
  for (let digits = 6; digits < 9; digits++) {
    const decimal = Number(single.toPrecision(digits));
    if (Math.fround(decimal) === single) return decimal;
  }
  return Number(single.toPrecision(9));
}

function valueJson(field, value) {
  if (field.resolvedType instanceof protobuf.Type) return messageJson(field.resolvedType, value);
  if (field.type === 'float') return shortestFloat(value);
  if (field.type === 'double' && !Number.isFinite(value)) return String(value);
  if (field.type === 'bytes') return Buffer.from(value).toString('base64');
  return value; // strings, bools, 32-bit integers; enums are names and 64-bit integers strings (LOADER_OPTIONS)
}

function defaultJson(field) {
  if (field.resolvedType instanceof protobuf.Enum) {
    const zero = Object.entries(field.resolvedType.values).find(([, number]) => number === 0);
    return zero ? zero[0] : 0;
  }
  if (field.type === 'string' || field.type === 'bytes') return '';
  if (field.type === 'bool') return false;
  if (['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64'].includes(field.type)) return '0';
  return 0;
}

/**
 * MESSAGE (decoded with LOADER_OPTIONS) of protobufjs type TYPE as its proto3 JSON, the way the Python client
 * prints it (MessageToDict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)):
 * repeated and map fields always, messages and fields with presence (proto3 `optional`, oneof members) when set,
 * other scalars always (their zero when unset). The v0.7 result messages use no well-known types; meeting one
 * is an error here rather than a silently different JSON.
 */
function messageJson(type, message) {
  if (type.fullName.startsWith('.google.protobuf.')) throw new Error(`no JSON mapping here for ${type.fullName}`);
  const json = {};
  for (const field of type.fieldsArray) {
    const value = message[field.name];
    if (field.map) {
      json[field.name] = Object.fromEntries(Object.entries(value || {}).map(([k, v]) => [k, valueJson(field, v)]));
    } else if (field.repeated) {
      json[field.name] = (value || []).map((item) => valueJson(field, item));
    } else if (value !== undefined && value !== null) {
      json[field.name] = valueJson(field, value);
    } else if (!(field.resolvedType instanceof protobuf.Type) && !field.partOf) {
      json[field.name] = defaultJson(field);
    }
  }
  return json;
}

/** A decoded RecognitionResult as its v0.7 JSON (see messageJson). */
function resultJson(types, result) {
  return messageJson(types.lookupType('sightline.v1.RecognitionResult'), result);
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

// ---------------------------------------------------------------------------------------- StreamRecognize

const ORDERINGS = ['ORDERED', 'AS_COMPLETED'];
const DROP_POLICIES = ['BLOCK', 'DROP_OLDEST', 'DROP_NEWEST'];
const TIMING_FIELDS = ['queue_ms', 'preprocess_ms', 'triton_ms', 'postprocess_ms', 'total_ms'];
const DEFAULT_COLOR = '128,128,128';

/** The p-th percentile (0 to 100) of VALUES, linearly interpolated (numpy's default); null when VALUES is empty. */
function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
}

const round3 = (x) => Math.round(x * 1000) / 1000;

/** A google.protobuf.Timestamp of now. */
function now() {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

/**
 * COUNT raw RGB24 frames of WIDTH x HEIGHT, each of one colour, cycling over COLORS ([[r, g, b], ...]); COUNT 0
 * means without end. One pixel buffer per colour is built once and sent again (grpc-js serialises on write()).
 */
function* rawFrames({ width, height, colors, count }) {
  const buffers = colors.map((rgb) => Buffer.alloc(width * height * 3).fill(Buffer.from(rgb)));
  for (let i = 0; count === 0 || i < count; i++) {
    yield { raw: { width, height, format: 'RGB24', data: buffers[i % buffers.length] } };
  }
}

/** COUNT frames of encoded images (Buffers), cycling over IMAGES. */
function* encodedFrames(images, count) {
  for (let i = 0; count === 0 || i < count; i++) yield { encoded: images[i % images.length] };
}

/** What a StreamRecognizeResponse prints as: one flat JSON object. */
function resultLine(response, latencyMs) {
  // defaults: false leaves out zero values: a frame_id of 0, a timing of 0 ms.
  const line = { frame_id: Number(response.frame_id || 0), status: response.status || 'FRAME_STATUS_UNSPECIFIED' };
  const best = response.result?.outputs?.[0]?.labels?.predicted?.[0];
  line.label = best ? best.label_name : null;
  line.score = best && best.score !== undefined ? shortestFloat(best.score) : null;
  if (response.status === 'SKIPPED') line.skip_reason = response.skip_reason || '';
  if (response.status === 'ERROR') {
    const code = response.error?.code || 0;
    line.error = { code: grpc.status[code] || String(code), message: response.error?.message || '' };
  }
  line.latency_ms = latencyMs === null ? null : round3(latencyMs);
  line.timing = Object.fromEntries(TIMING_FIELDS.map((name) => [name, round3(response.timing?.[name] || 0)]));
  return line;
}

/**
 * Streams FRAMES (an iterable or async iterable of Frame messages without frame_id: {encoded: Buffer} or
 * {raw: {width, height, format, data}}) through StreamRecognize and resolves to the summary once the server has
 * answered every frame and ended the stream with OK. Frame i gets frame_id i (unless it brings its own) and the
 * current time as its timestamp.
 *
 * Options: specId or versionId, showDiscarded, maxInFlight, ordering ('ORDERED', 'AS_COMPLETED'), dropPolicy
 * ('BLOCK', 'DROP_OLDEST', 'DROP_NEWEST'), maxLatencyMs, tracking (the StreamConfig); fps (0: as fast as flow
 * control allows); deadlineMs (none by default: a stream lasts as long as its video); signal (an AbortSignal: stop
 * sending and half-close; the results of the frames already sent still come); cancelSignal (an AbortSignal: cancel
 * the call, which then rejects with CANCELLED); onResult(line, response), called for each result as it arrives.
 *
 * Backpressure: when write() returns false (grpc-js buffers, HTTP/2 flow control holds the frames back, e.g. the
 * server's BLOCK policy stopped reading), no frame is written until 'drain'. A non-OK status rejects with the
 * grpc-js ServiceError (code, details); a stream that ends OK without answering every frame once rejects too.
 */
async function streamFrames(client, frames, options = {}) {
  const { fps = 0, deadlineMs, signal, cancelSignal, onResult = () => {} } = options;
  const config = {
    ...(options.versionId ? { version_id: options.versionId } : { spec_id: options.specId }),
    show_discarded: Boolean(options.showDiscarded),
    max_in_flight: options.maxInFlight || 0,
    ordering: options.ordering || 'ORDERED',
    drop_policy: options.dropPolicy || 'BLOCK',
    max_latency_ms: options.maxLatencyMs || 0,
    tracking: Boolean(options.tracking),
  };
  const call = client.StreamRecognize(deadlineMs ? { deadline: new Date(Date.now() + deadlineMs) } : {});
  cancelSignal?.addEventListener('abort', () => call.cancel(), { once: true });
  const sentAt = new Map(); // frame_id (a decimal string, as proto-loader gives int64s) -> performance.now()
  const latencies = [];
  const summary = { frames: 0, sent: 0, ok: 0, skipped: 0, errors: 0, drain_waits: 0 };
  const problems = [];
  const started = performance.now();
  let lastResultAt = started;

  call.on('data', (response) => {
    const at = performance.now();
    const key = String(response.frame_id || 0);
    const sent = sentAt.get(key);
    if (sent === undefined) problems.push(`frame ${key} was answered but not sent, or answered twice`);
    sentAt.delete(key);
    summary.frames += 1;
    lastResultAt = at;
    const latency = sent === undefined ? null : at - sent;
    if (response.status === 'OK') {
      summary.ok += 1;
      if (latency !== null) latencies.push(latency);
    } else if (response.status === 'SKIPPED') {
      summary.skipped += 1;
    } else {
      summary.errors += 1;
    }
    onResult(resultLine(response, latency), response);
  });
  // Settles once the stream is over: with OK after the last result was read ('end' and 'status'), or with the
  // error of a non-OK status.
  let over = false;
  const closed = new Promise((resolve, reject) => {
    let ended = false;
    let status = null;
    const settle = () => ended && status && resolve(status);
    call.on('end', () => {
      ended = true;
      settle();
    });
    call.on('status', (s) => {
      if (s.code === grpc.status.OK) status = s;
      settle();
    });
    call.on('error', reject);
  });
  const finished = closed.then(
    () => {},
    () => {},
  );
  finished.then(() => {
    over = true;
  });
  const stopped = signal
    ? new Promise((resolve) =>
        signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
      )
    : new Promise(() => {});
  const halt = Promise.race([finished, stopped]);
  const halted = () => over || Boolean(signal?.aborted);

  const produce = async () => {
    call.write({ config });
    let index = 0;
    for await (const image of frames) {
      if (halted()) break;
      if (fps > 0) {
        const wait = started + (index * 1000) / fps - performance.now();
        if (wait > 0) await Promise.race([sleep(wait), halt]);
        if (halted()) break;
      }
      const frameId = image.frame_id ?? index;
      sentAt.set(String(frameId), performance.now());
      const accepted = call.write({ frame: { timestamp: now(), ...image, frame_id: frameId } });
      summary.sent += 1;
      index += 1;
      if (!accepted) {
        // Backpressure: grpc-js holds as much as its buffer takes; wait until it has room (or the call is over).
        summary.drain_waits += 1;
        await Promise.race([once(call, 'drain').catch(() => {}), halt]);
      } else if (fps === 0) {
        // Let the event loop read results (and signals) between frames that are written at once.
        await nextTurn();
      }
    }
    if (!over) call.end(); // half-close: the server answers what it has, then ends the stream
  };

  try {
    await produce();
  } catch (error) {
    call.cancel();
    await finished;
    throw error;
  }
  await closed; // rejects with the ServiceError of a non-OK status
  if (sentAt.size > 0) problems.push(`${sentAt.size} of ${summary.sent} frames were never answered`);
  if (problems.length > 0) {
    const error = new Error(`the stream ended OK but ${problems.join('; ')}`);
    error.summary = summary;
    throw error;
  }
  const seconds = (lastResultAt - started) / 1000;
  return {
    frames: summary.frames,
    sent: summary.sent,
    ok: summary.ok,
    skipped: summary.skipped,
    errors: summary.errors,
    elapsed_s: round3(seconds),
    fps: seconds > 0 ? round3(summary.frames / seconds) : 0,
    latency_p50_ms: latencies.length ? round3(percentile(latencies, 50)) : null,
    latency_p99_ms: latencies.length ? round3(percentile(latencies, 99)) : null,
    drain_waits: summary.drain_waits,
  };
}

function usage(message) {
  process.stderr.write(`${message}\n`);
  process.stderr.write('usage: node client.js [--server HOST:PORT] (--spec ID | --version-id ID) IMAGE\n');
  process.stderr.write('       node client.js [--server HOST:PORT] --list\n');
  process.stderr.write(
    '       node client.js --stream [--server HOST:PORT] (--spec ID | --version-id ID) [--max-in-flight N]\n' +
      '              [--ordering ordered|as-completed] [--drop-policy block|drop-oldest|drop-newest]\n' +
      '              [--max-latency-ms N] [--tracking] [--count N] [--fps F]\n' +
      '              (IMAGE... | --raw WIDTHxHEIGHT --color R,G,B [--color R,G,B ...])\n',
  );
  process.exit(2);
}

/** A whole number from a flag, within [min, max], or the usage message. */
function integer(values, name, min, max = Number.MAX_SAFE_INTEGER) {
  const text = values[name];
  const n = Number(text);
  if (!/^\d+$/.test(String(text).trim()) || n < min || n > max) {
    usage(`--${name} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}`);
  }
  return n;
}

/** An enum value from a flag written in any case, with - or _: 'drop-oldest' -> 'DROP_OLDEST'. */
function choice(values, name, allowed) {
  const value = String(values[name]).toUpperCase().replace(/-/g, '_');
  if (!allowed.includes(value)) usage(`--${name} must be one of ${allowed.map((a) => a.toLowerCase().replace(/_/g, '-')).join(', ')}`);
  return value;
}

/** The frames to stream, from the positionals (image files) or --raw and --color. */
function framesFromFlags(values, positionals) {
  if (values.raw !== undefined) {
    if (positionals.length > 0) usage('give image files or --raw, not both');
    const size = /^(\d+)x(\d+)$/.exec(values.raw);
    if (!size || Number(size[1]) < 1 || Number(size[2]) < 1) usage('--raw must be WIDTHxHEIGHT, e.g. 640x480');
    const colors = (values.color || [DEFAULT_COLOR]).map((text) => {
      const rgb = text.split(',').map((c) => Number(c.trim()));
      if (rgb.length !== 3 || rgb.some((c) => !Number.isInteger(c) || c < 0 || c > 255)) {
        usage(`--color must be R,G,B with each from 0 to 255, not ${text}`);
      }
      return rgb;
    });
    const count = values.count === undefined ? 30 : integer(values, 'count', 0);
    return rawFrames({ width: Number(size[1]), height: Number(size[2]), colors, count });
  }
  if (values.color !== undefined) usage('--color goes with --raw');
  if (positionals.length === 0) usage('give image files or --raw WIDTHxHEIGHT');
  const images = positionals.map((file) => fs.readFileSync(file));
  const count = values.count === undefined ? images.length : integer(values, 'count', 0);
  return encodedFrames(images, count);
}

/** --stream: one JSON line per result on stdout, then the summary line. */
async function streamMain(client, values, positionals, deadlineMs) {
  const frames = framesFromFlags(values, positionals);
  const options = {
    specId: values.spec,
    versionId: values['version-id'],
    showDiscarded: values['show-discarded'],
    maxInFlight: values['max-in-flight'] === undefined ? 0 : integer(values, 'max-in-flight', 1, 64),
    ordering: choice(values, 'ordering', ORDERINGS),
    dropPolicy: choice(values, 'drop-policy', DROP_POLICIES),
    maxLatencyMs: integer(values, 'max-latency-ms', 0),
    tracking: values.tracking,
    fps: Number(values.fps),
    deadlineMs,
    onResult: (line) => process.stdout.write(`${JSON.stringify(line)}\n`),
  };
  if (!Number.isFinite(options.fps) || options.fps < 0) usage('--fps must be a number, 0 or more');
  // Ctrl-C: stop sending and half-close (the results of the frames sent still come); a second one cancels.
  const stop = new AbortController();
  const cancel = new AbortController();
  const onSigint = () => (stop.signal.aborted ? cancel : stop).abort();
  process.on('SIGINT', onSigint);
  try {
    const summary = await streamFrames(client, frames, {
      ...options,
      signal: stop.signal,
      cancelSignal: cancel.signal,
    });
    process.stdout.write(`${JSON.stringify({ summary })}\n`);
  } finally {
    process.off('SIGINT', onSigint);
  }
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
      'deadline-ms': { type: 'string' },
      tls: { type: 'boolean', default: false },
      protos: { type: 'string', default: DEFAULT_PROTOS },
      stream: { type: 'boolean', default: false },
      'max-in-flight': { type: 'string' },
      ordering: { type: 'string', default: 'ordered' },
      'drop-policy': { type: 'string', default: 'block' },
      'max-latency-ms': { type: 'string', default: '0' },
      tracking: { type: 'boolean', default: false },
      raw: { type: 'string' },
      color: { type: 'string', multiple: true },
      count: { type: 'string' },
      fps: { type: 'string', default: '0' },
    },
  });
  let deadlineMs = values.stream ? undefined : 30000;
  if (values['deadline-ms'] !== undefined) deadlineMs = integer(values, 'deadline-ms', 1);
  if (values.stream) {
    if (values.list) usage('--list and --stream do not go together');
    if (Boolean(values.spec) === Boolean(values['version-id'])) usage('give exactly one of --spec or --version-id');
  } else if (!values.list) {
    if (positionals.length !== 1) usage('give exactly one image file');
    if (Boolean(values.spec) === Boolean(values['version-id'])) usage('give exactly one of --spec or --version-id');
  }

  const sightline = loadSightline(path.resolve(values.protos));
  const client = connect(sightline, values.server, { tls: values.tls });
  try {
    if (values.stream) {
      await streamMain(client, values, positionals, deadlineMs);
      return;
    }
    const output = { server: values.server, specifications: await listSpecifications(client, deadlineMs) };
    if (!values.list) {
      const image = fs.readFileSync(positionals[0]);
      const result = await recognize(client, image, {
        specId: values.spec,
        versionId: values['version-id'],
        showDiscarded: values['show-discarded'],
        deadlineMs,
      });
      output.result = resultJson(loadTypes(path.resolve(values.protos)), result);
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

module.exports = {
  loadSightline,
  loadTypes,
  resultJson,
  shortestFloat,
  connect,
  listSpecifications,
  recognize,
  streamFrames,
  rawFrames,
  encodedFrames,
  percentile,
};
