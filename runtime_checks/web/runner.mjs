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
import { decoder, extraOptions } from './decoder.mjs';

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
const session = await ort.InferenceSession.create(readFileSync(spec.model), {
  executionProviders: ['wasm'],
  graphOptimizationLevel: 'all',
  extra: extraOptions(spec.session_options),
  externalData: spec.data.map((path) => ({ path, data: readFileSync(join(dirname(spec.model), path)) })),
});
const loadS = (performance.now() - loadStart) / 1000;

const model = decoder(ort, session, spec);

async function handle(request) {
  if (request.op === 'logits') {
    const logits = await model.logits(request.ids);
    const data = logits.data;  // float32 (the graph's logits stay float32 in every precision we export)
    await write(JSON.stringify({ rows: logits.dims[1], vocab: logits.dims[2] }) + '\n');
    await write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return;
  }
  if (request.op === 'generate') {
    await write(JSON.stringify(await model.generate(request.ids, request.max_new_tokens)) + '\n');
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
