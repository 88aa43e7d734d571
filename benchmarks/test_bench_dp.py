"""What differential privacy adds to ``telemetry process`` (SPEC 11, docs/privacy.md).

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_dp.py``. Input: the
``PROCESS_ROWS`` (4 M) generated canonical Parquet records of the process
benchmarks, default grouping, region GB. Measured: ``--dp-epsilon 1`` (contribution
bounding, OpenDP noise on every candidate row's count and on every column of the
released rows, metadata); baseline, in the same run and in turns: the same command
with the k = 5 release. Each a fresh process, best of ``ROUNDS``; the CPU time (user +
system) of each process is reported too, the machine being shared.
"""

from __future__ import annotations

import resource

from conftest import PROCESS_ROWS, run_cli

ROUNDS = 5


def test_dp_overhead(benchmark, figure, parquet_4m, bench_dir, cli_env, warm_cli) -> None:
    base = ["process", str(parquet_4m), "--region", "GB"]
    warm = bench_dir / "warm.parquet"  # written by warm_cli: the DP kernels compiled before timing
    run_cli(["process", str(warm), "--out", str(bench_dir / "dp-warm"), "--region", "GB", "--dp-epsilon", "1"], cli_env)
    k_runs: list[float] = []
    cpu: dict[str, list[float]] = {"dp": [], "k": []}

    def run(name: str, args: list[str]) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds = run_cli(args, cli_env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return seconds

    benchmark.pedantic(
        lambda: run("dp", [*base, "--out", str(bench_dir / "dp-out"), "--dp-epsilon", "1"]),
        setup=lambda: k_runs.append(run("k", [*base, "--out", str(bench_dir / "k-out")])),
        rounds=ROUNDS,
    )
    dp_s, k_s = benchmark.stats.stats.min, min(k_runs)
    ratio = dp_s / k_s
    dp_cpu, k_cpu = min(cpu["dp"]), min(cpu["k"])
    benchmark.extra_info.update(dp_seconds=round(dp_s, 2), k_seconds=round(k_s, 2), ratio=round(ratio, 3),
                                dp_cpu_seconds=round(dp_cpu, 2), k_cpu_seconds=round(k_cpu, 2),
                                cpu_ratio=round(dp_cpu / k_cpu, 3))  # fmt: skip
    figure(
        f"`telemetry process --dp-epsilon 1`, {PROCESS_ROWS / 1e6:g} M Parquet records, whole process",
        f"{dp_s:.2f} s",
        f"the same run with the k = 5 release: {k_s:.2f} s",
        ratio,
        "≤ 1.15x the k run",
        ratio <= 1.15,
        f"best of {ROUNDS} each, in turns; every run a fresh process; the DP run bounds contributions, "
        "noises every candidate row's count with OpenDP and the released rows' columns; "
        f"CPU (user + system, best of {ROUNDS}): DP {dp_cpu:.2f} s, k {k_cpu:.2f} s, {dp_cpu / k_cpu:.2f}x",
    )
