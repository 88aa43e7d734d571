"""Run every ``fuzz_*.py`` harness for a share of FUZZ_SECONDS (``make fuzz``).

Corpora live in ``fuzz/corpus/<harness>/`` (seeded from the test fixtures or, for
the canonical formats, a few generated records; grown by each run); crashing,
hanging (``-timeout``) and memory-hungry inputs are written to ``fuzz/artifacts/``.
Prints the executions of each harness; exit status 1 when any found a crash or hung."""

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
INPUT_SECONDS = 60  # one input (at most 4 KiB) running longer is a hang worth an artifact
GRACE_SECONDS = 90  # beyond its share, for a harness to import, load its corpus and exit


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
        command = [
            sys.executable, harness, corpus, f"-max_total_time={share}",
            f"-artifact_prefix={artifacts}/{name}-", "-rss_limit_mb=2048", "-max_len=4096",
            f"-timeout={INPUT_SECONDS}",
        ]
        log, code = _run(command, share + GRACE_SECONDS)
        runs = re.findall(r"Done (\d+) runs", log)
        if code is None and runs:
            # libFuzzer calls exit() holding the GIL; a pyarrow read-ahead thread of an
            # abandoned CSV reader then waits for the GIL while exit waits for the thread
            outcome = "no crashes (process hung at exit and was stopped)"
        elif code is None:
            outcome = f"HANG: no result {share + GRACE_SECONDS} s after starting"
        else:
            outcome = "CRASH (see fuzz/artifacts/)" if code else "no crashes"
        bad = code != 0 and not (code is None and runs)
        failed |= bad
        print(f"{name}: {share} s, {runs[-1] if runs else '?'} executions, {outcome}", flush=True)
        if bad:
            print("\n".join(log.splitlines()[-40:]), flush=True)
    return 1 if failed else 0


def _run(command: list[str], seconds: int) -> tuple[str, int | None]:
    """(stdout + stderr, exit status) of ``command``; status None when it had to be
    stopped after ``seconds``."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE, timeout=seconds)
    except subprocess.TimeoutExpired as exc:
        return _text(exc.stdout) + _text(exc.stderr), None
    return done.stdout + done.stderr, done.returncode


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


if __name__ == "__main__":
    sys.exit(main())
