"""What `build` shipped for each target, beside the dense quantizations it measured: one markdown
table from the build folders' build.json (size, memory at the target's context, decode tok/s and
ratio to the reference with 95% intervals, perplexity ratio to the reference, verdict).

    python bench/build_targets.py runs/rpi runs/phone runs/laptop-cpu runs/browser runs/pi-zero
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gprune_edge.candidates import interval_text


def rows(folder: Path) -> list[str]:
    build = json.loads((folder / "build.json").read_text())
    out = []
    for c in build["candidates"]:
        shipped = c["verdict"].startswith("chosen")
        if c["sparsity"] and not shipped and c["perplexity_ratio"] is None:
            continue  # a pruned candidate skipped: counted below the table
        memory = "-" if c["memory_mb"] is None else f"{c['memory_mb']:.0f}"
        ppl = "-" if c["perplexity_ratio"] is None else f"{c['perplexity_ratio']:.3f} ({c['max_perplexity_ratio']:.3f})"
        name = f"**{c['label']}**" if shipped else c["label"]
        out.append(f"| {build['target']['name']} | {name} | {c['size_bytes'] / 1e6:.1f} | {memory} | "
                   f"{interval_text(c['decode_tok_s'], '.1f')} | {interval_text(c['decode_speedup'], '.2f')} | "
                   f"{ppl} | {c['verdict']} |")
    return out


def main() -> None:
    print("| target | artifact | size MB | memory MB | decode tok/s | decode ratio | perplexity ratio (worst) "
          "| verdict |")
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for folder in map(Path, sys.argv[1:]):
        print("\n".join(rows(folder)))
        build = json.loads((folder / "build.json").read_text())
        skipped = sum(c["verdict"].startswith("skipped") for c in build["candidates"])
        notes.append(f"- {build['target']['name']}: {build['note']}; {skipped} of {len(build['candidates'])} "
                     "candidates skipped without measuring them")
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
