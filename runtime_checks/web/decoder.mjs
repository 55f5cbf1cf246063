// Greedy decoding with a KV cache over an ONNX decoder in edgecore.onnx_names' layout, for any build of
// onnxruntime-web (`ort`): runner.mjs uses it in Node, bench/web_page.py's page in a browser.
// spec: {"past": [[name, heads, head_dim, dtype], ...], "outputs": [output names, logits first]}.

// onnxruntime config entries ("session.x": value) as onnxruntime-web's nested `extra` option
export function extraOptions(sessionOptions) {
  const extra = {};
  for (const [key, value] of Object.entries(sessionOptions)) {
    const path = key.split('.');
    let node = extra;
    for (const part of path.slice(0, -1)) node = node[part] ??= {};
    node[path[path.length - 1]] = value;
  }
  return extra;
}

export function decoder(ort, session, spec) {
  const emptyPast = () => Object.fromEntries(spec.past.map(([name, heads, dim, dtype]) =>
    [name, new ort.Tensor(dtype, dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0), [1, heads, 0, dim])]));
  const dispose = (tensors) => { for (const t of Object.values(tensors)) t.dispose?.(); };

  // One forward: logits [ids.length, vocab] and the next step's past (this step's present under the past names)
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
    dispose(past);
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

  async function logits(ids) {
    const [out, past] = await step(ids, emptyPast(), 0);
    dispose(past);
    return out;
  }

  async function generate(ids, maxNew) {
    const start = performance.now();
    let [out, past] = await step(ids, emptyPast(), 0);
    const tokens = [argmaxLast(out)];
    const first = performance.now();
    for (let k = 1; k < maxNew; k++) {
      [out, past] = await step([tokens[tokens.length - 1]], past, ids.length + tokens.length - 1);
      tokens.push(argmaxLast(out));
    }
    const end = performance.now();
    dispose(past);
    return { tokens, prefill_s: (first - start) / 1000, decode_s: (end - first) / 1000 };
  }

  return { logits, generate };
}
