"""The contract every engine keeps, run against each engine available.

Like sketches-py's ``BaseTestDDSketches``: one class of tests, subclassed per
engine. An engine may only decide where ``Job.work`` runs: whatever it does,
the metrics, the accounting and the order of record outputs are those of a
plain loop over the batches.

Reference: a plain serial loop over the same batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from telemetry.config import make_options
from telemetry.engine import Job, get_engine
from telemetry.generate import generate
from telemetry.keys import Keyring
from telemetry.metrics import release
from telemetry.readers import ReadBatch
from tests.concurrency import failures_in_threads
from tests.conftest import TEST_KEY


def _reads(records: int, batch_rows: int) -> list[ReadBatch]:
    table = pa.Table.from_batches(list(generate(records, seed=7, hours=2)))
    reads = []
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows).combine_chunks().to_batches()[0]
        rows = np.arange(start + 1, start + 1 + part.num_rows, dtype=np.int64)
        reads.append(ReadBatch(batch=part, rows=rows, rejects=[], file="gen"))
    return reads


def _loop(job: Job, reads):
    return [job.work(r) for r in reads]


def _metrics(partials, job):
    state = partials[0].state
    for p in partials[1:]:
        state = state.merge(p.state)
    return release(state, job.spec, k=3).metrics


@pytest.fixture(scope="module")
def setup():
    opts = make_options(region="GB", emit_records=True, window="30m")
    job = Job(Keyring.from_key(TEST_KEY), opts)
    reads = _reads(6000, 700)
    return job, reads, _loop(job, reads)


class EngineContract:
    """Subclasses provide the fixture ``engine``: a callable returning a fresh engine."""

    def test_same_metrics_as_a_plain_loop(self, setup, engine):
        job, reads, expected = setup
        got = list(engine().run(job, iter(reads)))
        assert _metrics(got, job).equals(_metrics(expected, job))

    def test_partials_in_input_order_with_full_accounting(self, setup, engine):
        job, reads, expected = setup
        got = list(engine().run(job, iter(reads)))
        assert [p.records_in for p in got] == [r.batch.num_rows for r in reads]
        for p, e in zip(got, expected):
            assert p.records_in == p.records_ok + len(p.rejects) + p.opted_out
            assert p.records.equals(e.records)

    def test_reads_lazily(self, setup, engine):
        """An engine must not pull the whole input before yielding (bounded memory)."""
        job, reads, _ = setup
        pulled = 0

        def source():
            nonlocal pulled
            for r in reads:
                pulled += 1
                yield r

        stream = engine().run(job, source())
        next(stream)
        assert pulled < len(reads)
        stream.close()

    def test_two_runs_at_once(self, setup, engine):
        """Two pipelines in one process (e.g. a notebook and a server) share kernels safely."""
        job, reads, expected = setup
        reference = _metrics(expected, job)
        assert failures_in_threads(
            lambda t: _metrics(list(engine().run(job, iter(reads))), job).equals(reference), rounds=2
        ) == []


class TestLocalOneThread(EngineContract):
    @pytest.fixture
    def engine(self):
        return lambda: get_engine("local", 1)


class TestLocalThreads(EngineContract):
    @pytest.fixture
    def engine(self):
        return lambda: get_engine("local", 2)


class TestDask(EngineContract):
    """Batches shipped to a real two-process cluster (the stream's use of the engine)."""

    @pytest.fixture
    def engine(self, dask_client):
        return lambda: get_engine("dask", 1, client=dask_client)
