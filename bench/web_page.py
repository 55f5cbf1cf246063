"""The same ONNX artifact decoded by onnxruntime-web in a real page (headless Chromium, a localhost
page, 1 WASM thread) and in Node (the onnxruntime-web backend that `verify` and `build` use), one
after the other: does the Node figure stand for a browser? Usage:

    python bench/web_page.py runs/onnx-web/dense-int8-dq runs/onnx-web/g20-int8-dq --runs 5 \
        --out bench/results/web_page.json

Needs Debian's chromium (apt install chromium). The page imports runtime_checks/web/decoder.mjs, the
decoding loop the Node runner runs, and posts its timings back to this script's server."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from edgecore.onnx_names import MODEL_FILE
from runtime_checks import web
from runtime_checks.backends import load_backend
from runtime_checks.backends.web_backend import graph_interface

PROMPT = [3 + (7 * i) % 49000 for i in range(32)]
NEW_TOKENS = 16
PAGE = """<!doctype html><meta charset="utf-8"><title>gprune-edge page check</title><script type="module">
import * as ort from '/ort/ort.wasm.min.mjs';
import { decoder, extraOptions } from '/web/decoder.mjs';
const spec = SPEC;
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = '/ort/';
const post = (body) => fetch('/result', { method: 'POST', body: JSON.stringify(body) });
try {
  const t0 = performance.now();
  const session = await ort.InferenceSession.create('/model/model.onnx', {
    executionProviders: ['wasm'], graphOptimizationLevel: 'all', extra: extraOptions(spec.session_options),
    externalData: spec.data.map((path) => ({ path, data: '/model/' + path })) });
  const load_s = (performance.now() - t0) / 1000;
  const model = decoder(ort, session, spec);
  await model.generate(spec.prompt, 4);
  const runs = [];
  for (let i = 0; i < spec.runs; i++) runs.push(await model.generate(spec.prompt, spec.new_tokens));
  await post({ load_s, runs, agent: navigator.userAgent });
} catch (e) { await post({ error: String(e) }); }
</script>"""


def _serve(model_dir: Path, spec: dict):
    ort_dist = web.runner().parent / "node_modules" / "onnxruntime-web" / "dist"
    roots = {"/ort/": ort_dist, "/web/": Path(web.__file__).parent, "/model/": model_dir}
    result, done = {}, threading.Event()

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path):
            for prefix, root in roots.items():
                if path.startswith(prefix):
                    return str(root / path[len(prefix):].split("?")[0])
            return "/nonexistent"

        def do_GET(self):
            if self.path == "/":
                body = PAGE.replace("SPEC", json.dumps(spec)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def do_POST(self):
            result.update(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()
            done.set()

        def log_message(self, *args):
            pass

    Handler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                              ".wasm": "application/wasm"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, result, done


def in_page(model_dir: Path, runs: int, chromium: str, timeout: float) -> dict:
    interface = graph_interface(model_dir / MODEL_FILE)
    spec = {k: interface[k] for k in ("past", "outputs", "data", "session_options")}
    spec.update(prompt=PROMPT, new_tokens=NEW_TOKENS, runs=runs)
    server, result, done = _serve(model_dir, spec)
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                f"http://127.0.0.1:{server.server_address[1]}/"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not done.wait(timeout):
            raise SystemExit(f"the page posted nothing within {timeout:.0f} s")
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if "error" in result:
        raise SystemExit(f"the page failed: {result['error']}")
    return result


def in_node(model_dir: Path, runs: int) -> dict:
    with load_backend("onnxruntime-web", model_dir, threads=1) as node:
        node.generate(PROMPT, 4)
        timings = [node.generate(PROMPT, NEW_TOKENS) for _ in range(runs)]
        return {"load_s": node.load_s, "runs": [{"tokens": t.tokens, "prefill_s": t.prefill_s,
                                                 "decode_s": t.decode_s} for t in timings]}


def _summary(measured: dict) -> dict:
    decode = [(NEW_TOKENS - 1) / r["decode_s"] for r in measured["runs"]]
    return {"load_s": measured["load_s"], "decode_tok_s": statistics.median(decode), "decode_runs": decode,
            "prefill_ms": statistics.median(r["prefill_s"] * 1000 for r in measured["runs"]),
            "tokens": measured["runs"][0]["tokens"]}


@click.command()
@click.argument("model_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--runs", default=5, show_default=True)
@click.option("--chromium", default="chromium", show_default=True)
@click.option("--timeout", default=600.0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(model_dirs, runs, chromium, timeout, out):
    rows = []
    for model_dir in model_dirs:
        node, page = _summary(in_node(model_dir, runs)), in_page(model_dir, runs, chromium, timeout)
        page = {**_summary(page), "agent": page["agent"]}
        row = {"artifact": str(model_dir), "node": node, "page": page, "same_tokens": node["tokens"] == page["tokens"]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
