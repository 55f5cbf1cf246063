// An ONNX decoder in onnxruntime-web's WASM backend, driven by runtime_checks/backends/web_backend.py.
//   node runner.mjs SPEC_JSON
// SPEC_JSON: {"model": path of the .onnx, "data": [external data files beside it], "threads": n,
//             "past": [[name, heads, head_dim, dtype], ...], "outputs": [output names, logits first],
//             "session_options": {"session.disable_quant_qdq": "1", ...} (onnxruntime config entries)}.
// Requests come one JSON line at a time on stdin; every reply is one JSON line on stdout,
// followed, for "logits", by rows x vocab little-endian float32 values.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import * as ort from 'onnxruntime-web';

const spec = JSON.parse(process.argv[2]);

function peakRssMb() {
  // VmHWM: this process's own high-water mark (Node's heap and WASM's linear memory both count)
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return line ? Number(line.split(/\s+/)[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

function write(chunk) {
  return new Promise((resolve) => (process.stdout.write(chunk) ? resolve() : process.stdout.once('drain', resolve)));
}

const beforeLoadMb = peakRssMb();
ort.env.wasm.numThreads = spec.threads;
ort.env.logLevel = 'error';
const loadStart = performance.now();
// onnxruntime-web takes config entries as nested `extra`: "session.x" -> {session: {x: ...}}
const extra = {};
for (const [key, value] of Object.entries(spec.session_options)) {
  const path = key.split('.');
  let node = extra;
  for (const part of path.slice(0, -1)) node = node[part] ??= {};
  node[path[path.length - 1]] = value;
}
const session = await ort.InferenceSession.create(readFileSync(spec.model), {
  executionProviders: ['wasm'],
  graphOptimizationLevel: 'all',
  extra,
  externalData: spec.data.map((path) => ({ path, data: readFileSync(join(dirname(spec.model), path)) })),
});
const loadS = (performance.now() - loadStart) / 1000;

const emptyPast = () => Object.fromEntries(spec.past.map(([name, heads, dim, dtype]) =>
  [name, new ort.Tensor(dtype, dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0), [1, heads, 0, dim])]));

// One forward: logits [ids.length, vocab] and the next step's past (this step's present under the past names).
async function step(ids, past, pastLen) {
  const n = ids.length;
  const feeds = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(pastLen + n).fill(1n), [1, pastLen + n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(pastLen + i)), [1, n]),
    ...past,
  };
  const out = await session.run(feeds);
  const next = {};
  spec.past.forEach(([name], i) => { next[name] = out[spec.outputs[i + 1]]; });
  for (const name of Object.keys(past)) past[name].dispose?.();
  return [out.logits, next];
}

function argmaxLast(logits) {
  const vocab = logits.dims[2];
  const data = logits.data;
  const start = data.length - vocab;
  let best = 0;
  for (let i = 1; i < vocab; i++) if (data[start + i] > data[start + best]) best = i;
  return best;
}

async function generate(ids, maxNew) {
  const start = performance.now();
  let [logits, past] = await step(ids, emptyPast(), 0);
  const tokens = [argmaxLast(logits)];
  const first = performance.now();
  for (let k = 1; k < maxNew; k++) {
    [logits, past] = await step([tokens[tokens.length - 1]], past, ids.length + tokens.length - 1);
    tokens.push(argmaxLast(logits));
  }
  const end = performance.now();
  for (const t of Object.values(past)) t.dispose?.();
  return { tokens, prefill_s: (first - start) / 1000, decode_s: (end - first) / 1000 };
}

async function handle(request) {
  if (request.op === 'logits') {
    const [logits, past] = await step(request.ids, emptyPast(), 0);
    for (const t of Object.values(past)) t.dispose?.();
    const data = logits.data;  // float32 (the graph's logits stay float32 in every precision we export)
    await write(JSON.stringify({ rows: logits.dims[1], vocab: logits.dims[2] }) + '\n');
    await write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return;
  }
  if (request.op === 'generate') {
    await write(JSON.stringify(await generate(request.ids, request.max_new_tokens)) + '\n');
    return;
  }
  if (request.op === 'stats') {
    await write(JSON.stringify({ peak_rss_mb: peakRssMb(), before_load_mb: beforeLoadMb, load_s: loadS }) + '\n');
    return;
  }
  throw new Error(`unknown op ${request.op}`);
}

await write(JSON.stringify({ ready: true, load_s: loadS, version: ort.env.versions?.web ?? null }) + '\n');
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  try {
    await handle(JSON.parse(line));
  } catch (e) {
    await write(JSON.stringify({ error: String(e?.message ?? e).split('\n')[0] }) + '\n');
  }
}
