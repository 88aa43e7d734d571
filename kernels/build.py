"""``python -m kernels.build``: compile ahead of time the kernel specializations runs use.

Runs a small workload through the pipeline (every writable input format, with
and without record output, several batches so that states merge) with Numba,
records each kernel's argument types as they arrive (``kernels._jit``), and
compiles exactly those specializations into one extension module with
``numba.pycc``, under the digest :func:`kernels._jit.digest` gives. The module's
wrappers release the GIL and use NumPy's error model, as the JIT kernels do.
Up to date: nothing to do, nothing printed. Otherwise progress on stderr (the
step, N of M, time so far and about how long is left; rewritten in place on a
terminal, a line every 15 s elsewhere). No ``numba.pycc`` (deprecated
upstream), no C compiler or a failed build: a one-line note, and runs keep
compiling with Numba (exit status 0 either way: this is speed only).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: What a cold build costs on the machine here (90 s of CPU, one core; README.md), for the first estimate.
TYPICAL = "about 2 minutes, longer on a busy machine"
#: pycc's last step (LLVM code for the whole module, the C wrappers, the link) took about
#: 0.8 times as long as compiling the kernels one by one, measured here.
LINK_SHARE = 0.8


class Progress:
    """Progress on stderr: rewritten in place on a terminal, else a line every ``every`` seconds
    (and each time ``force`` is given) so that a log stays short."""

    def __init__(self, prefix: str, every: float = 15.0, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.tty = self.stream.isatty()
        self.every = every
        self.started = time.monotonic()
        self.shown = float("-inf")
        self.width = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def show(self, text: str, force: bool = False) -> None:
        line = f"{self.prefix}: {text}"
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        elif force or now - self.shown >= self.every:
            self.stream.write(line + "\n")
        else:
            return
        self.shown = now
        self.stream.flush()

    def done(self, text: str) -> None:
        """The last line: kept on a terminal too."""
        self.show(text, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _workload(folder: Path) -> list[tuple[str, Callable[[], object]]]:
    """The workload's steps: (what, run it)."""
    import numpy as np

    import telemetry
    from telemetry.errors import ConfigError
    from telemetry.generate import write
    from telemetry.metrics.sketches import EXACT_LIMIT, Distinct
    from telemetry.readers import writable_formats

    key = bytes(range(32))

    def one_format(fmt: str) -> None:
        path = folder / f"cdrs.{fmt}"
        write(path, 6000, seed=3, batch_rows=2000, fmt=fmt)
        for records in (False, True):
            out = folder / f"out-{fmt}-{records}"
            try:
                telemetry.process([path], key=key, out=out, fmt=fmt, region="GB", emit_records=records, batch_rows=2048)
            except ConfigError:  # a format that needs settings (mapped): its kernels are the others'
                break

    def hll() -> None:  # groups with more distinct subscribers than the exact sets keep
        values = np.random.default_rng(3).integers(0, 2**63, 2 * EXACT_LIMIT + 2, dtype=np.int64).astype(np.uint64)
        groups = np.zeros(len(values), np.int64)
        half = len(values) // 2
        parts = [Distinct.build(groups[:half], values[:half], 1), Distinct.build(groups[half:], values[half:], 1)]
        Distinct.union(parts, np.zeros(2, np.int64), 1).counts()

    def cryptopan() -> None:  # addresses kept as prefix-preserving pseudonyms (--ip-mode cryptopan)
        telemetry.process([folder / "cdrs.parquet"], key=key, out=folder / "out-cryptopan", region="GB",
                          emit_records=True, ip_mode="cryptopan", batch_rows=2048)  # fmt: skip

    def transit() -> None:  # identifiers read as text, mostly new ones hashed without the table
        # enough records that the writer gives up the destinations' dictionary page, so the
        # reader's value sample (telemetry.readers.canonical._read_as_text) runs too
        path = folder / "transit.parquet"
        write(path, 70_000, seed=3, shape="transit")
        telemetry.process([path], key=key, out=folder / "out-transit", region="GB", batch_rows=8192)

    def dp() -> None:  # differential privacy: bounding, noise, the DP release (docs/privacy.md)
        telemetry.process([folder / "cdrs.parquet"], key=key, region="GB", dp_epsilon=1.0, batch_rows=2048)

    steps = [(fmt, lambda fmt=fmt: one_format(fmt)) for fmt in writable_formats()]
    steps.append(("Crypto-PAn addresses", cryptopan))  # on the parquet step's file
    steps.append(("a transit day", transit))
    steps.append(("pseudonymize", lambda: telemetry.pseudonymize(["+44 7700 900123", None], key=key, region="GB")))
    steps.append(("differential privacy", dp))
    steps.append(("distinct counts (HyperLogLog)", hll))
    return steps


def _learn(progress: Progress) -> None:
    """Run the workload with Numba, recording what each kernel is called with."""
    from kernels import _jit

    state = {"step": "", "kernel": ""}

    def show() -> None:
        kernel = f": compiling {state['kernel']}" if state["kernel"] else ""
        progress.show(f"[1/2] sample workload, {state['step']}{kernel}, {duration(progress.elapsed())} so far")

    def compiling(name: str) -> None:
        state["kernel"] = name
        show()

    # the sample's own caveats (a reader's notes on how it reads a format) are not the user's
    logger = logging.getLogger("telemetry")
    level = logger.level
    logger.setLevel(logging.ERROR)
    _jit.on_compile.append(compiling)
    try:
        with tempfile.TemporaryDirectory() as folder:
            steps = _workload(Path(folder))
            for i, (what, run) in enumerate(steps, 1):
                state.update(step=f"step {i} of {len(steps)} ({what})", kernel="")
                show()
                run()
    finally:
        _jit.on_compile.remove(compiling)
        logger.setLevel(level)


def _compile(recorded: dict, target: str, progress: Progress) -> None:
    import numba.pycc.compiler as pycc_compiler
    from numba.core.codegen import AOTCPUCodegen
    from numba.core.compiler import Flags
    from numba.pycc import CC

    class _Flags(Flags):  # as the JIT kernels: the GIL released, NumPy's error model
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True
            self.error_model = "numpy"

    pycc_compiler.Flags = _Flags
    # as the JIT kernels: this CPU's model and features (the module's digest names the CPU),
    # where numba.pycc would compile for a generic x86-64 (HMAC 4x slower)
    AOTCPUCodegen._customize_tm_features = AOTCPUCodegen._get_host_cpu_features
    compile_one = pycc_compiler.compile_extra
    total = len(recorded)
    count = [0]
    phase = time.monotonic()

    def compile_extra(typing_context, target_context, func, *args, **kwargs):  # pycc calls it per export
        count[0] += 1
        each = (time.monotonic() - phase) / (count[0] - 1) if count[0] > 1 else None
        left = f", about {duration(each * (total - count[0] + 1 + LINK_SHARE * total))} left" if each else ""
        progress.show(f"[2/2] compiling ahead, {count[0]} of {total} ({func.__module__}.{func.__qualname__}){left}")
        result = compile_one(typing_context, target_context, func, *args, **kwargs)
        if count[0] == total:
            link = LINK_SHARE * (time.monotonic() - phase)
            progress.show(f"[2/2] code generation and link of the module, about {duration(link)} left", force=True)
        return result

    pycc_compiler.compile_extra = compile_extra
    name = f"_telemetry_kernels_{Path(target).name.split('-')[-1]}"
    cc = CC(name)
    cc.target_cpu = "host"
    cc.verbose = False
    exports = []
    for i, ((kernel_name, signature), (kernel, types)) in enumerate(sorted(recorded.items(), key=lambda kv: repr(kv[0]))):
        symbol = f"k{i}"
        cc.export(symbol, kernel.dispatcher.overloads[types].signature)(kernel.py_func)
        exports.append([kernel_name, signature, symbol])
    with tempfile.TemporaryDirectory() as scratch:
        cc.output_dir = scratch
        try:
            cc.compile()
        finally:
            pycc_compiler.compile_extra = compile_one
        (built,) = Path(scratch).glob(f"{name}*")
        library = f"{target}{''.join(built.suffixes)}"
        os.replace(built, library)
    manifest = {"module": name, "library": library, "exports": exports}
    partial = f"{target}.json.{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    os.replace(partial, f"{target}.json")  # last: the manifest is what makes the module loadable


def main() -> int:
    from kernels import _jit

    target = _jit.ahead_path()
    if not target:
        print(f"kernels.build: {_jit.NO_CACHE_REASON}; nothing built", file=sys.stderr)
        return 0
    if os.path.exists(f"{target}.json"):
        return 0
    try:
        import numba.pycc  # noqa: F401 — deprecated upstream: docs/design.md says what follows it
    except ImportError:
        print("kernels.build: this Numba has no numba.pycc: nothing compiled ahead (runs compile with Numba "
              "on first use and keep it in the disk cache)", file=sys.stderr)  # fmt: skip
        return 0
    progress = Progress("kernels.build")
    progress.show(f"compiling the kernels ahead into {os.path.dirname(target)}: once per machine and version, "
                  f"{TYPICAL} (runs work without it, only slower to start)", force=True)  # fmt: skip
    _jit._recording = {}
    try:
        _learn(progress)
        _compile(_jit._recording, target, progress)
    except Exception as exc:  # noqa: BLE001 — speed only: runs compile with Numba instead
        progress.done(f"kernels not compiled ahead ({type(exc).__name__}: {exc})")
        return 0
    progress.done(f"{len(_jit._recording)} kernel specializations compiled ahead in {duration(progress.elapsed())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
