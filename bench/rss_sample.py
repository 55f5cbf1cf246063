"""Sample the resident memory of running gprune-edge commands once a second, split into anonymous memory and
file-backed pages (mapped files: checkpoints, GGUF artifacts), to find where a run's peak RSS is. Start it
beside a benchmark; it logs every matching process until interrupted.

    python bench/rss_sample.py /tmp/rss.log &  python bench/prune_scale.py ...
    sort -t= -k2 -n -r /tmp/rss.log | head     # the largest samples

Each line: seconds since start, pid, the command's verb, RSS / anonymous / file-backed in GiB."""

from __future__ import annotations

import re
import subprocess
import sys
import time

PATTERN = "gprune_edge (prune|export|verify|recover)"


def main(log: str) -> None:
    started = time.time()
    with open(log, "w") as out:
        while True:
            pids = subprocess.run(["pgrep", "-f", PATTERN], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    status = open(f"/proc/{pid}/status").read()
                    verb = open(f"/proc/{pid}/cmdline").read().split("\0")[3]
                except (OSError, IndexError):
                    continue  # ended between pgrep and the read
                kib = {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "RssAnon", "RssFile")}
                out.write(f"{time.time() - started:.0f} {pid} {verb} rss={kib['VmRSS'] / 2**20:.2f} "
                          f"anon={kib['RssAnon'] / 2**20:.2f} file={kib['RssFile'] / 2**20:.2f}\n")
            out.flush()
            time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1])
