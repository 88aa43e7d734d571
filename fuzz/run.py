"""Run every ``fuzz_*.py`` harness for a share of FUZZ_SECONDS (``make fuzz``).

Corpora live in ``fuzz/corpus/<harness>/`` (seeded from the test fixtures or, for
the canonical formats, a few generated records; grown by each run); crashing inputs are written to ``fuzz/artifacts/``. Exit status 1
when any harness found a crash."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

from telemetry.generate import write

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = {
    "fuzz_smpp": "tests/fixtures/messaging/smpp*",
    "fuzz_twilio": "tests/fixtures/messaging/twilio*",
    "fuzz_mapped": "tests/fixtures/messaging/mapped*",
    "fuzz_asterisk": "tests/fixtures/voip/asterisk*.csv",
    "fuzz_freeswitch": "tests/fixtures/voip/freeswitch*.csv",
    "fuzz_kamailio": "tests/fixtures/voip/kamailio*.csv",
}
#: harness → formats whose generated files (a few records each) seed its corpus
GENERATED = {"fuzz_csv": ("csv",), "fuzz_jsonl": ("jsonl",)}


def main() -> int:
    total = int(os.environ.get("FUZZ_SECONDS", sys.argv[1] if len(sys.argv) > 1 else 600))
    harnesses = sorted(glob.glob(os.path.join(HERE, "fuzz_*.py")))
    share = max(1, total // max(1, len(harnesses)))
    artifacts = os.path.join(HERE, "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    failed = False
    for harness in harnesses:
        name = os.path.splitext(os.path.basename(harness))[0]
        corpus = os.path.join(HERE, "corpus", name)
        os.makedirs(corpus, exist_ok=True)
        for seed in glob.glob(os.path.join(ROOT, SEEDS.get(name, "-"))):
            shutil.copy(seed, corpus)
        for fmt in GENERATED.get(name, ()):
            write(os.path.join(corpus, f"generated-{fmt}"), 6, fmt=fmt, seed=1)
        result = subprocess.run(
            [sys.executable, harness, corpus, f"-max_total_time={share}",
             f"-artifact_prefix={artifacts}/{name}-", "-rss_limit_mb=2048", "-max_len=4096"],
            capture_output=True, text=True, cwd=HERE,
        )
        log = result.stdout + result.stderr
        runs = re.findall(r"Done (\d+) runs", log)
        crashed = result.returncode != 0
        failed |= crashed
        print(f"{name}: {share} s, {runs[-1] if runs else '?'} executions, "
              f"{'CRASH (see fuzz/artifacts/)' if crashed else 'no crashes'}")
        if crashed:
            print("\n".join(log.splitlines()[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
