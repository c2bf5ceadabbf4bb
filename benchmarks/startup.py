"""How long `cvtrain --help` and a bad override take, as whole processes (Python start-up
included): the two answers a user waits for before any training.

Each command runs `--rounds` times, alternated; the median, the range and every sample are
saved to benchmarks/results/startup.json. Targets (issue 14): --help under 1.5 s, a bad override
under 1 s, on this 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from harness import save, table

COMMANDS = {
    "cvtrain --help": ["--help"],
    "cvtrain trainer.epochs=abc (bad override)": ["trainer.epochs=abc"],
    "cvtrain trainer.epoch=3 (unknown key)": ["trainer.epoch=3"],
}
TARGET_S = {"cvtrain --help": 1.5}  # the others: 1.0


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvtrain", *args], capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    seconds(["--help"])  # warm the file cache once; not counted
    for _ in range(rounds):
        for name, args in COMMANDS.items():
            samples[name].append(round(seconds(args), 3))
    rows = [
        {
            "command": name,
            "median s": f"{statistics.median(s):.2f}",
            "range s": f"{min(s):.2f}-{max(s):.2f}",
            "target s": TARGET_S.get(name, 1.0),
            "runs": len(s),
        }
        for name, s in samples.items()
    ]
    table(rows)
    save(
        "startup",
        {
            "setup": f"whole `python -m cvtrain` processes, {rounds} alternated rounds",
            "table": rows,
            "samples_s": samples,
        },
    )


if __name__ == "__main__":
    main()
