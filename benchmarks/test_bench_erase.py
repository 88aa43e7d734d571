"""Erasure speed: ``telemetry.erase.erase`` of one subject over a record output of many files,
against rewriting every file (read, filter, write), timed in the same run.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_erase.py``. The dataset is the
pipeline's own record output (1 M generated records, one file per 10,000-record batch
and date); the subject is a real pseudonym from it, held by a few files. Reported:
record files and rows looked at per second, and the ratio to the rewrite-everything
baseline (what a plain "filter the dataset" job costs).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import BENCH_KEY

ROWS = 1_000_000


@pytest.fixture(scope="module")
def records_dataset(bench_dir: Path) -> Path:
    import telemetry
    from telemetry.generate import write

    source = bench_dir / "erase-input.parquet"
    write(source, ROWS, seed=11)
    out = bench_dir / "erase-dataset"
    telemetry.process([source], key=BENCH_KEY, out=out, region="GB", emit_records=True, batch_rows=10_000)
    return out


def _subject(dataset: Path) -> bytes:
    """A caller seen in only a few files (the usual erasure request)."""
    files = sorted((dataset / "records").rglob("*.parquet"))
    counts: dict[bytes, int] = {}
    for path in files:
        for value in set(pq.read_table(path, columns=["source"]).column("source").to_pylist()):
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
    return min(counts, key=lambda v: (counts[v], v))


def _rewrite_everything(dataset: Path, subject: bytes) -> int:
    removed = 0
    for path in sorted((dataset / "records").rglob("*.parquet")):
        table = pq.read_table(path)
        keep = pc.invert(pc.or_(pc.equal(table.column("source"), pa.scalar(subject, pa.binary(16))),
                                pc.equal(table.column("destination"), pa.scalar(subject, pa.binary(16)))))
        keep = pc.fill_null(keep, True)
        removed += table.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
        pq.write_table(table.filter(keep), path, compression="zstd")
    return removed


def test_erase_one_subject(benchmark, figure, records_dataset, tmp_path) -> None:
    from telemetry.erase import erase

    subject = _subject(records_dataset)
    files = len(list((records_dataset / "records").rglob("*.parquet")))
    copies = iter(range(100))

    def fresh() -> tuple[tuple[Path, list[bytes]], dict]:
        work = tmp_path / f"copy{next(copies)}"
        shutil.copytree(records_dataset, work)
        return (work, [subject]), {}

    result = benchmark.pedantic(erase, setup=fresh, rounds=3, iterations=1)
    seconds = benchmark.stats.stats.min

    work = fresh()[0][0]
    start = time.perf_counter()
    baseline_removed = _rewrite_everything(work, subject)
    baseline = time.perf_counter() - start
    assert result.records_removed == baseline_removed > 0
    assert result.files_scanned == files and result.files_rewritten + result.files_deleted < files / 4

    ratio = baseline / seconds
    benchmark.extra_info.update(files_per_s=round(files / seconds), rows_per_s=round(ROWS / seconds),
                                files_rewritten=result.files_rewritten, ratio=round(ratio, 1))
    figure(
        f"erase one subject, {files} record files, {ROWS:,} records",
        f"{files / seconds:,.0f} files/s, {ROWS / seconds / 1e6:.2f} M rows/s "
        f"({result.files_rewritten + result.files_deleted} files rewritten)",
        f"rewrite every file: {files / baseline:,.0f} files/s",
        ratio,
        "≥ 3x (rewriting dominates: a rewritten file costs ~25 looked-at ones)",
        ratio >= 3,
    )
