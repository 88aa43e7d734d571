"""``python -m kernels.build``: compile ahead of time the kernel specializations runs use.

Runs a small workload through the pipeline (every writable input format, with
and without record output, several batches so that states merge) with Numba,
records each kernel's argument types as they arrive (``kernels._jit``), and
compiles exactly those specializations into one extension module with
``numba.pycc``, under the digest :func:`kernels._jit.digest` gives. The module's
wrappers release the GIL and use NumPy's error model, as the JIT kernels do.
Up to date: nothing to do. No C compiler or a failed build: a one-line warning,
and runs keep compiling with Numba (exit status 0 either way: this is speed only).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def _workload(folder: Path) -> None:
    import telemetry
    from telemetry.errors import ConfigError
    from telemetry.generate import write
    from telemetry.readers import writable_formats

    key = bytes(range(32))
    for fmt in writable_formats():
        path = folder / f"cdrs.{fmt}"
        write(path, 6000, seed=3, batch_rows=2000, fmt=fmt)
        for records in (False, True):
            out = folder / f"out-{fmt}-{records}"
            try:
                telemetry.process([path], key=key, out=out, fmt=fmt, region="GB", emit_records=records, batch_rows=2048)
            except ConfigError:  # a format that needs settings (mapped): its kernels are the others'
                break
    telemetry.process([folder / "cdrs.parquet"], key=key, out=folder / "out-cryptopan", region="GB",
                      emit_records=True, ip_mode="cryptopan", batch_rows=2048)
    # a transit day: identifiers read as text, mostly new ones hashed without the table
    transit = folder / "transit.parquet"
    write(transit, 30_000, seed=3, shape="transit")
    telemetry.process([transit], key=key, out=folder / "out-transit", region="GB", batch_rows=8192)
    telemetry.pseudonymize(["+44 7700 900123", None], key=key, region="GB")
    # differential privacy: bounding, noise, the DP release (docs/privacy.md)
    telemetry.process([folder / "cdrs.parquet"], key=key, region="GB", dp_epsilon=1.0, batch_rows=2048)
    # groups with more distinct subscribers than the exact sets keep (HyperLogLog)
    import numpy as np

    from telemetry.metrics.sketches import EXACT_LIMIT, Distinct

    values = np.random.default_rng(3).integers(0, 2**63, 2 * EXACT_LIMIT + 2, dtype=np.int64).astype(np.uint64)
    groups = np.zeros(len(values), np.int64)
    half = len(values) // 2
    parts = [Distinct.build(groups[:half], values[:half], 1), Distinct.build(groups[half:], values[half:], 1)]
    Distinct.union(parts, np.zeros(2, np.int64), 1).counts()


def _compile(recorded: dict, target: str) -> None:
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
        cc.compile()
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
    _jit._recording = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            _workload(Path(folder))
        _compile(_jit._recording, target)
    except Exception as exc:  # noqa: BLE001 — speed only: runs compile with Numba instead
        print(f"kernels.build: kernels not compiled ahead ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 0
    print(f"kernels.build: {len(_jit._recording)} kernel specializations compiled ahead", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
