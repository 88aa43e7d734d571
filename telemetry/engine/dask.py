"""The Dask engine: the same :class:`~telemetry.engine.Job` on the workers of a
``dask.distributed`` cluster (SPEC section 10; docs/engines.md).

A batch run (:meth:`DaskEngine.process`) sends paths, never records: one task
per input file detects its format and, for a file that splits (Parquet row
groups), answers with the number of pieces, each then a task of its own; any
other file it reads and works through itself. Only the small batch that may end
such a file (under a quarter of ``batch_rows``) is left on its worker: the
client plans which of those the local engine would gather into one batch
(:class:`~telemetry.readers.Coalescer`, fed their sizes only) and a task joins
them, so every engine works through the same batches. Workers write record
output and rejects under ``OUT`` in a staging folder, named after the batch, so a
task retried after a lost worker writes the same files again; partial states are
merged on the cluster in a tree of fan-in :data:`FAN_IN` on one worker (``home``),
which also brings the client each task's counts; the merged state is released there
and the client receives the released table; a last task renames the record files
to the local engine's names and joins the rejects in input order.

Key material reaches the workers only inside task payloads (the pickled Job):
every task gets an explicit key name made of a random run id and positions, so
Dask never tokenizes the keyring into a key, a log line or the dashboard.

:meth:`DaskEngine.run` is the engine protocol for a caller that reads on its own
(``telemetry stream``): each batch is shipped to a worker, its Partial shipped back.
"""

from __future__ import annotations

import collections
import copy
import os
import shutil
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from distributed.diagnostics.plugin import WorkerPlugin

from telemetry.engine import Job, Partial

#: Partial states merged by one task of the tree (the client never merges them).
FAN_IN = 8
#: The workers' outputs before the commit: <the run's staging directory>/.telemetry-dask-<run>/
STAGING = ".telemetry-dask-"
#: A task's rejects, staged for the commit: an Arrow IPC stream file (never pickle on disk).
REJECTS_FORMAT = "telemetry-dask-rejects"
REJECTS_VERSION = 1
COUNTS = ("records_in", "records_ok", "records_quarantined", "records_opted_out")
#: Clients that registered the warm-up plugin: their scheduler keeps it, and gives it to
#: workers that join later, so a run on a long-lived client (a notebook's) does not register
#: it again (a round trip to every worker and a warm-up there: 7-15 ms before each run).
_WARMED: weakref.WeakSet = weakref.WeakSet()


class DaskEngine:
    """Tasks on a Dask cluster: ``client`` (an existing ``distributed.Client``), else the
    scheduler at ``scheduler`` (else ``DASK_SCHEDULER_ADDRESS``), else a ``LocalCluster``
    of ``workers`` processes (0: one per core) of one thread each, started on first use
    and stopped by :meth:`close`."""

    name = "dask"

    def __init__(self, *, scheduler: str | None = None, workers: int = 0, client: Any = None) -> None:
        self._given = client
        self._scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
        self._workers = workers or os.cpu_count() or 1
        self._client = client
        self._cluster = None
        self.threads: int | None = None
        self.direct = False  # results fetched from the workers straight (see _direct)

    @property
    def client(self):
        if self._client is None:
            import distributed

            if self._scheduler is not None:
                self._client = distributed.Client(self._scheduler)
            else:
                self._cluster = local_cluster(self._workers)
                self._client = distributed.Client(self._cluster)
        if self.threads is None:
            if self._client not in _WARMED:
                self._client.register_plugin(Warmup(os.environ.get("TELEMETRY_CACHE_DIR")), name=Warmup.name)
                _WARMED.add(self._client)
            self.threads = sum(self._client.nthreads().values())
            self.direct = _direct(self._client)
        return self._client

    def close(self) -> None:
        """Stop what this engine started (a given client or scheduler is left running)."""
        if self._client is not None and self._client is not self._given:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    # -- the engine protocol: batches read by the caller ------------------------------

    def run(self, job: Job, reads: Iterator) -> Iterator[Partial]:
        """One Partial per read batch, in input order; each batch (or Parquet piece) is
        shipped to a worker, at most two per worker thread in flight."""
        client = self.client
        run = _run_id()
        ahead = 2 * max(1, self.threads or 1)
        pending: collections.deque = collections.deque()
        try:
            for i, item in enumerate(reads):
                pending.append(client.submit(_work_item, run, job, _Sealed(item), key=_key("batch", run, i)))
                if len(pending) >= ahead:
                    yield from client.gather(pending.popleft(), direct=self.direct)
            while pending:
                yield from client.gather(pending.popleft(), direct=self.direct)
        finally:
            for future in pending:
                future.cancel()
            client.run(_forget, run, on_error="ignore")

    # -- a batch run: paths in, merged state out --------------------------------------

    def process(
        self, job: Job, paths: list[str], fmt: str, batch_rows: int, options: Any,
        out: Path | None, progress: Callable[[dict], None] | None, release: Callable[[Any, Job], Any],
    ) -> tuple[Any, dict[str, int], dict[str, int]]:
        """Work through ``paths`` on the cluster; ``release(state, job)`` of the merged
        state (None when no batch was read), the counts and the dimension rewrites. The
        release runs on the worker holding the merged state, beside the commit: the client
        receives the released table, not the state (its distinct sets are tens of MB for a
        few million records). With ``out``, record output and rejects are written there by
        the workers, as the local engine's run writes them."""
        from telemetry.readers import get_format

        if fmt != "auto":
            get_format(fmt)  # an unknown name fails before any task runs
        client = self.client
        run = _run_id()
        stage = None if out is None else out / f"{STAGING}{run}"  # out: the run's own staging directory
        plan = _Plan(client, run, job, stage, batch_rows, self.threads or 1, progress, self.direct)
        try:
            for i, path in enumerate(paths):
                plan.submit_file(i, path, fmt, options)
            # the release submitted before the client has every task's counts: it waits on the cluster
            released = client.submit(_release, run, job, release, plan.merged(), key=_key("release", run),
                                     **plan.home)
            totals, rewritten, order = plan.counted()
            if stage is not None:
                plan.result(client.submit(_commit, os.fspath(stage), os.fspath(out), order, key=_key("commit", run)))
            released = plan.result(released)
        finally:
            plan.cancel()
            client.run(_forget, run, on_error="ignore", wait=False)
        return released, totals, rewritten


class _Shape(NamedTuple):
    num_rows: int
    schema: Any
    rejects: int  # how many rows its rejects stand for


class _Tail(NamedTuple):
    """What the client knows of a file's small last batch: its shape and where it is."""

    batch: _Shape
    future: Any


def _gatherer(batch_rows: int):
    from telemetry.readers import Coalescer

    class Gatherer(Coalescer):
        """The local engine's gathering of small batches, decided on their shapes:
        a gathered batch is the list of the tails that make it."""

        join = staticmethod(list)

        @staticmethod
        def rejects_of(read: Any) -> int:
            return read.batch.rejects  # the client knows a tail by its shape, its rejects by their count

    return Gatherer(batch_rows)


class _Meta(NamedTuple):
    """What a task tells the client: its batches' counts, how many Partials it wrote,
    and for a file task, how many pieces the file splits into or its small last batch."""

    counts: tuple[int, int, int, int]
    rewritten: dict[str, int]
    partials: int
    pieces: int | None = None
    tail: _Shape | None = None


class _Merged(NamedTuple):
    """A node of the merge tree: the state of its inputs, and the counts of every task
    below it that the client has not had (by partition id)."""

    state: Any
    metas: dict[str, _Meta]


class _Done(NamedTuple):
    state: Any
    meta: _Meta
    tail: Any  # the file's small last ReadBatch, left for the client to gather
    pieces: list | None = None  # the file's pieces, for the piece tasks (never sent to the client)


class _Plan:
    """The client's side of a batch run: file tasks ``ahead`` of the one whose answer
    is awaited, gathering decisions, the merge tree, and the order of every task's
    Partials (for the commit)."""

    def __init__(self, client, run: str, job: Job, stage: Path | None, batch_rows: int, threads: int,
                 progress, direct: bool) -> None:
        self.client, self.run, self.job, self.batch_rows = client, run, job, batch_rows
        self.direct = direct
        self.stage = None if stage is None else os.fspath(stage)
        self.progress = progress
        self.ahead = 4 * threads
        self.last = threads  # the tasks likely to end the run: one per worker thread
        first = min(client.nthreads(), default=None)  # none yet: a cluster that scales up from zero
        # where states are merged and released (another worker if it is lost)
        self.home = {} if first is None else {"workers": [first], "allow_other_workers": True}
        self.files: collections.deque = collections.deque()  # (index, done, meta future)
        self.gather = _gatherer(batch_rows)
        self.groups = 0
        self.order: list = []  # (partition id, its Partials; None: the merge tree brings its task's counts)
        self.levels: list[list] = [[]]  # the merge tree's pending (state future, partition id or None), per level
        self.metas: list = []  # futures of counts the merge tree brings, in the order they come
        self.merges = 0
        self.totals = dict.fromkeys(COUNTS, 0)
        self.rewritten: dict[str, int] = {}

    def submit_file(self, index: int, path: str, fmt: str, options) -> None:
        done = self.client.submit(_file_task, self.run, self.job, index, path, fmt, self.batch_rows, options,
                                  self.stage, key=_key("file", self.run, index))
        meta = self.client.submit(_meta_of, done, key=_key("meta", self.run, "file", index))
        self.files.append((index, done, meta))
        while len(self.files) > self.ahead:
            self._take_file()

    def _take_file(self) -> None:
        index, done, meta_future = self.files.popleft()
        meta = self.result(meta_future)
        self._count(meta)
        if meta.pieces is not None:
            self._ready(self.gather.flush())
            n = meta.pieces  # in one call: the scheduler queues them and hands them to free workers
            # pure=False: the keys are given, and a pure map tokenizes its arguments all the same (the
            # job pickled once per piece: 8-13 ms on the client before the first piece could start)
            pieces = self.client.map(_piece_task, [self.run] * n, [self.job] * n, [index] * n, range(n),
                                     [done] * n, [self.stage] * n,
                                     key=[_key("piece", self.run, index, k) for k in range(n)], pure=False)
            for k, piece in enumerate(pieces):
                self._task(piece, f"{_file_pid(index)}p{k:05d}")
            return
        if meta.partials:
            self._ready(self.gather.flush())
            self.order.append((_file_pid(index), meta.partials))
            self._merge_in((done, None))
        if meta.tail is not None:
            tail = self.client.submit(_tail_of, done, key=_key("tail", self.run, index))
            self._ready(self.gather.add(_Tail(meta.tail, tail)))

    def _ready(self, gathered: list) -> None:
        for group in gathered:
            tails = group if isinstance(group, list) else [group]
            g = self.groups
            self.groups += 1
            done = self.client.submit(_group_task, self.run, self.job, g, self.stage,
                                      *[t.future for t in tails], key=_key("gather", self.run, g))
            self._task(done, f"g{g:06d}")

    def _task(self, done, pid: str) -> None:
        """A piece or gathered batch's task: its counts come with the merge tree (a task of
        its own per piece cost each piece a round trip to the scheduler before the next
        could start on its worker: 4-5 ms a piece)."""
        self.order.append((pid, None))
        self._merge_in((done, pid))

    def _merge_in(self, entry: tuple, level: int = 0) -> None:
        """Add a state to the tree: every FAN_IN states of a level become one of the next,
        the tasks' own once ``last`` more have come (see :meth:`merged`). A merge of tasks'
        states tells the client their counts while the run goes on (for its progress), when
        it has progress to show."""
        if level == len(self.levels):
            self.levels.append([])
        self.levels[level].append(entry)
        if len(self.levels[level]) == FAN_IN + (self.last if level == 0 else 0):
            parts, self.levels[level] = self.levels[level][:FAN_IN], self.levels[level][FAN_IN:]
            merged = self._merge(parts)
            if level == 0 and self.progress is not None:
                self.metas.append(self._metas_of(merged))
            self._merge_in(merged, level + 1)

    def _merge(self, parts: list) -> tuple:
        self.merges += 1
        futures, pids = zip(*parts)
        return self.client.submit(_merge, pids, *futures, key=_key("merge", self.run, self.merges),
                                  **self.home), None

    def _metas_of(self, entry: tuple):
        future, pid = entry
        # before the release, which its worker might otherwise run first (the commit waits for the counts)
        return self.client.submit(_metas_of, future, pid, key=_key("metas", self.run, len(self.metas)), priority=1,
                                  **self.home)

    def _count(self, meta: _Meta) -> None:
        for name, n in zip(COUNTS, meta.counts):
            self.totals[name] += n
        for name, n in meta.rewritten.items():
            self.rewritten[name] = self.rewritten.get(name, 0) + n
        if self.progress is not None and meta.partials:
            self.progress(dict(self.totals))

    def merged(self) -> Any:
        """Every file taken and every task submitted: the merged state (a future on the
        cluster; None when no batch was read). Its tasks' counts are asked for first, so
        the worker holding it answers before it starts the release. The tasks submitted
        last, which likely end the run, are merged last: the states of those before them
        are merged in one task, which takes them from the other workers while the last
        tasks run (a 2-worker run of 4 M records: 15-20 ms of states moved after the last
        piece, a piece's 1-5 ms so)."""
        while self.files:
            self._take_file()
        self._ready(self.gather.flush())
        tasks, *levels = self.levels
        rest = [entry for level in levels for entry in level]
        early, tasks = tasks[: -self.last], tasks[-self.last :]
        rest += [self._merge(early)] if len(early) > 1 else early
        rest += tasks
        self.levels = [[]]
        while len(rest) > 1:
            rest = [self._merge(rest[i : i + FAN_IN]) for i in range(0, len(rest), FAN_IN)]
        if not rest:
            return None
        self.metas.append(self._metas_of(rest[0]))
        return rest[0][0]

    def counted(self) -> tuple[dict[str, int], dict[str, int], list[tuple[str, int]]]:
        """After :meth:`merged`, wait for every task's counts: the totals, the dimension
        rewrites, and each task's Partials in order."""
        metas: dict[str, _Meta] = {}
        for future in self.metas:
            for pid, meta in self.result(future).items():
                if pid not in metas:
                    metas[pid] = meta
                    self._count(meta)
        order = [(pid, metas[pid].partials if partials is None else partials) for pid, partials in self.order]
        return dict(self.totals), dict(self.rewritten), order

    def result(self, future) -> Any:
        """A task's result (fetched from its worker straight when ``direct``)."""
        return self.client.gather(future, direct=self.direct)

    def cancel(self) -> None:
        """Drop what is left (after an error): the cluster forgets the run's tasks."""
        self.files.clear()
        self.levels = [[]]
        self.order = []
        self.metas = []


def _direct(client) -> bool:
    """Whether results are fetched from the workers straight rather than relayed by the
    scheduler: as the client's ``direct_to_workers`` says (Dask's setting
    ``distributed.client.direct-to-workers``), else when its cluster is a ``LocalCluster``,
    whose workers this machine reaches for sure. A 4 M-record run's released table (12 MB)
    took 0.06-0.14 s relayed, 0.02-0.03 s straight, after the last task of a run."""
    import distributed

    if client.direct_to_workers is not None:
        return bool(client.direct_to_workers)
    return isinstance(getattr(client, "cluster", None), distributed.LocalCluster)


def _run_id() -> str:
    return uuid.uuid4().hex[:12]


def _key(kind: str, run: str, *at: Any) -> str:
    """A task's name: ``telemetry-<kind>-<run>-<positions>``. Dask names a task's prefix
    after the words before the run id (``telemetry-piece``) and learns each prefix's
    durations, which it weighs workers' queues by (and steals by, where it steals)."""
    return "-".join(["telemetry", kind, run, *map(str, at)])


def _file_pid(index: int) -> str:
    return f"f{index:06d}"


def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` processes of one thread each, whose workers take
    this process's kernel cache settings and the allocator settings of
    :func:`telemetry.allocators.tune_allocators`. Dask's nannies set
    ``MALLOC_TRIM_THRESHOLD_`` in their workers, which turns off glibc's growing mmap
    threshold: every large NumPy array is then mapped afresh and faulted in, zeroed
    (a 262,144-row Parquet piece: 4x the page faults, 0.55 -> 0.75 s); it is left unset.
    ``MALLOC_ARENA_MAX`` (1 unless the operator's environment says otherwise) goes the same
    way, in the nanny's pre-spawn environment: given to the worker once it runs, as it was
    before, it came too late for glibc, and the task thread's NumPy arrays had an arena of
    their own beside the event loop's (five arenas a worker; runs of 4 M records 2.5 s apart:
    7-10 k -> 4-5 k page faults a run on one worker, 17-33 k -> 10-13 k on two, peak RSS
    453-464 -> 409-412 MiB; time within the noise). Like Dask's own pre-spawn variables,
    it is set in this process's environment too.
    Its scheduler hands a worker one queued task at a time (``worker-saturation`` 1.0;
    Dask's default, 1.1, is two for a worker of one thread): with two, a worker holds
    the next piece while another runs out of work, and finishes both alone at the end.
    With tasks queued so, stealing has nothing to move: it is off, and the event loop's
    tick and system monitor run at 1 s and 5 s (20 ms and 0.5 s by default), which takes
    the scheduler's process (this one) from 0.04 to 0.02 s of CPU a second idle, and
    from 0.32-0.40 to 0.22-0.24 s a run of 4 M records: CPU the two workers' cores lost.
    The workers' statistical profiler (a stack sample every 10 ms, for a dashboard this
    cluster does not have) is off: 2.32-2.41 -> 2.16-2.31 s of worker CPU a run. Each
    worker and its nanny check the worker's memory every 1 s (pause, spill and terminate
    thresholds; 100 ms by default): a 2-worker cluster idle took 0.068 CPU seconds a
    second of this machine's two cores, 0.021 so, and a run's checks ran in the worker's
    event loop beside its task thread (a worker's memory: ~0.5 GB of its 12 GB limit
    here; a run of 4 M records on one worker, five runs each: median 3.06-3.08 ->
    2.96-2.97 s)."""
    import dask
    import distributed

    env = {name: os.environ[name] for name in ("TELEMETRY_CACHE_DIR", "TELEMETRY_AOT") if name in os.environ}
    env.setdefault("MIMALLOC_PURGE_DELAY", os.environ.get("MIMALLOC_PURGE_DELAY", "-1"))
    # glibc reads its variables as the process starts: the nanny's pre-spawn environment (set in
    # this process, inherited by the worker's), not ``env`` (set by the worker once it runs)
    arenas = None if "arena_max" in os.environ.get("GLIBC_TUNABLES", "") else "1"
    # the scheduler and the nannies read theirs as they are made; a nanny hands a worker process
    # its ``config`` each time it starts one, Dask's configuration by default, whose parts it
    # shares (a shallow merge): set here for a moment, the settings reached only the first
    # processes, and a worker started again after its process died ran with Dask's defaults
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                          "distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": arenas,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.scheduler.work-stealing": False,
                          "distributed.admin.tick.interval": "1s",
                          "distributed.admin.system-monitor.interval": "5s",
                          "distributed.worker.memory.monitor-interval": "1s",
                          "distributed.worker.profile.enabled": False}):
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, env=env, config=copy.deepcopy(dask.config.config))


# --- what runs on the workers -----------------------------------------------------

#: run -> its Job as this worker first received it, while the run lasts
_RUNS: collections.OrderedDict = collections.OrderedDict()


def _job(run: str, job: Job) -> Job:
    """The run's Job as this worker first received it, so its tables (pseudonymizer,
    rate deck, opt-out list) are built once per worker, not once per task."""
    kept = _RUNS.setdefault(run, job)
    _RUNS.move_to_end(run)
    while len(_RUNS) > 4:  # runs that ended without a _forget (their client died)
        _RUNS.popitem(last=False)
    return kept


def _forget(run: str) -> None:
    _RUNS.pop(run, None)


class _Sealed(NamedTuple):
    """A shipped batch, whose repr (a task's, in a log or the dashboard) shows no record."""

    item: Any

    def __repr__(self) -> str:
        return "<records>"


def _work_item(run: str, job: Job, sealed: _Sealed) -> list[Partial]:
    return _job(run, job).work_item(sealed.item)


class _Outputs:
    """One task's Partials: states merged, counts summed, record batches written under
    the staging folder as ``<pid>-<k>``, rejects kept as they came in ``<pid>.rejects``
    (an owner-only Arrow IPC file, :data:`REJECTS_FORMAT`), for the commit to pass
    through one QuarantineWriter in input order (the writer summarizes a file's rejects
    past a number per reason: a file's pieces and gathered batches must meet one
    writer, as on one machine)."""

    def __init__(self, stage: str | None, pid: str) -> None:
        self.stage, self.pid = stage, pid
        self.state = None
        self.counts = [0, 0, 0, 0]
        self.rewritten: dict[str, int] = {}
        self.partials = 0
        self.rejects: list = []

    def add(self, part: Partial) -> None:
        from telemetry.readers import rejected

        self.state = part.state if self.state is None else self.state.merge(part.state)
        for i, n in enumerate((part.records_in, part.records_ok, rejected(part.rejects), part.opted_out)):
            self.counts[i] += n
        for name, n in part.rewritten.items():
            self.rewritten[name] = self.rewritten.get(name, 0) + n
        if self.stage is not None:
            self.rejects += part.rejects
            if part.records is not None and part.records.num_rows:
                from telemetry.pipeline import write_records

                write_records(Path(self.stage), part.records, f"{self.pid}-{self.partials:06d}")
        self.partials += 1

    def done(self, **meta: Any) -> _Done:
        from telemetry.readers import rejected

        if self.rejects:
            from telemetry.metrics.persist import write_ipc

            target = Path(self.stage) / "quarantine" / f"{self.pid}.rejects"
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # a retried task writes the same file again
            write_ipc(target, _rejects_table(self.rejects), REJECTS_FORMAT, REJECTS_VERSION)
        tail = meta.pop("tail", None)
        shape = None if tail is None else _Shape(tail.batch.num_rows, tail.batch.schema, rejected(tail.rejects))
        pieces = meta.pop("pieces", None)
        return _Done(self.state, _Meta(tuple(self.counts), self.rewritten, self.partials,
                                        None if pieces is None else len(pieces), tail=shape, **meta), tail, pieces)


def _file_task(run: str, job: Job, index: int, path: str, fmt: str, batch_rows: int, options,
               stage: str | None) -> _Done:
    """A file: its pieces if it splits (their count for the client; the pieces themselves,
    the footer in them, for the piece tasks: planned once per run, not once per worker),
    else its batches worked through here but a small last one, which is left for the
    client to gather with the next files'."""
    from telemetry.readers import Coalescer, detect_format, get_format, rebatch
    from telemetry.readers._convert import convert_together

    job = _job(run, job)
    name = detect_format(path) if fmt == "auto" else fmt
    reader = get_format(name)
    outputs = _Outputs(stage, _file_pid(index))
    plan = None if reader.plan is None else reader.plan(path, batch_rows, options)
    if isinstance(plan, list):
        return outputs.done(pieces=plan)
    reads = reader.read(path, batch_rows, options) if plan is None else iter(convert_together(
        [(plan.file, part) for part in plan.parts]))
    last = None
    for read in rebatch(reads, batch_rows):
        if last is not None:  # not a file's last batch: a full one
            outputs.add(job.work(last))
        last = read
    if last is not None and Coalescer(batch_rows).passes(last):
        outputs.add(job.work(last))
        last = None
    return outputs.done(tail=last)


def _piece_task(run: str, job: Job, index: int, k: int, file: _Done, stage: str | None) -> _Done:
    """Piece ``k`` of the file whose task answered ``file``."""
    job = _job(run, job)
    outputs = _Outputs(stage, f"{_file_pid(index)}p{k:05d}")
    for read in file.pieces[k].read():
        outputs.add(job.work(read))
    return outputs.done()


def _group_task(run: str, job: Job, g: int, stage: str | None, *tails) -> _Done:
    from telemetry.readers import Coalescer

    read = tails[0] if len(tails) == 1 else Coalescer.join(list(tails))
    outputs = _Outputs(stage, f"g{g:06d}")
    outputs.add(_job(run, job).work(read))
    return outputs.done()


def _meta_of(done: _Done) -> _Meta:
    return done.meta


def _tail_of(done: _Done):
    return done.tail


def _merge(pids: tuple, *parts) -> _Merged:
    """One node of the merge tree: task results (``pids``: the partition id of each whose
    counts the client waits for, else None) and merge nodes in, their state (None: none)
    and those counts out."""
    from telemetry.metrics.state import merge

    metas: dict[str, _Meta] = {}
    for part, pid in zip(parts, pids):
        metas.update(_metas_of(part, pid))
    states = [p.state for p in parts if p.state is not None]
    return _Merged(merge(states) if states else None, metas)


def _metas_of(part: Any, pid: str | None) -> dict[str, _Meta]:
    """The counts a task result (``pid``: its partition id, None: the client has them)
    or merge node holds for the client."""
    if isinstance(part, _Merged):
        return part.metas
    return {} if pid is None else {pid: part.meta}


def _release(run: str, job: Job, release: Callable[[Any, Job], Any], state: Any) -> Any:
    """The release of the merged state, where it lies, its parts side by side on the
    worker's own cores (:func:`_own_cores`): it is the run's last task (beside the
    commit), every piece is done, and on one thread it left the other cores idle (the
    4 M-record state: 0.16-0.17 s on one core)."""
    from telemetry.metrics.state import cores_free

    with cores_free(_own_cores()):
        return release(None if state is None else state.state, _job(run, job))


def _own_cores() -> int:
    """The cores this worker process may run on (its CPU affinity: a worker confined to
    some of a machine's cores, by a batch system, a container or ``taskset``, uses those)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _commit(stage: str, out: str, order: list[tuple[str, int]]) -> None:
    """The staged outputs under the local engine's names: record files ``part-<seq>``
    (seq counting every Partial in input order) and one ``rejects.jsonl`` written from
    every task's rejects in input order. Safe to run again after a lost worker: what is
    renamed is not staged any more, and the rejects file is written afresh."""
    from telemetry.metrics.persist import read_ipc
    from telemetry.quarantine import QuarantineWriter

    stage_dir, out_dir = Path(stage), Path(out)
    if not stage_dir.is_dir():
        return  # committed already
    staged = collections.defaultdict(list)
    for path in (stage_dir / "records").glob("date=*/*.parquet"):
        staged[path.stem].append(path)
    seq = 0
    parts = []
    for pid, partials in order:
        for k in range(partials):
            for path in staged.get(f"{pid}-{k:06d}", ()):
                target = out_dir / "records" / path.parent.name / f"part-{seq:06d}.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
            seq += 1
        part = stage_dir / "quarantine" / f"{pid}.rejects"
        if part.is_file():
            parts.append(part)
    if parts:
        quarantine = QuarantineWriter(out_dir)
        quarantine.path.unlink(missing_ok=True)  # an interrupted commit's
        with quarantine:
            for part in parts:
                quarantine.write(_rejects_of(read_ipc(part, REJECTS_FORMAT, REJECTS_VERSION)))
    shutil.rmtree(stage_dir)


def _rejects_table(rejects: list) -> Any:
    """Rejects (:class:`~telemetry.readers.Reject` and ``RejectRun``) as one Arrow table, in
    order: a Reject's ``row`` and ``fields`` (in their order), a run's ``rows``."""
    import numpy as np
    import pyarrow as pa

    from telemetry.readers import RejectRun

    runs = np.array([isinstance(r, RejectRun) for r in rejects], dtype=np.bool_)
    sizes = np.array([len(r.rows) if run else 0 for r, run in zip(rejects, runs)], dtype=np.int64)
    offsets = np.zeros(len(rejects) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.concatenate([r.rows for r, run in zip(rejects, runs) if run] or [np.zeros(0, np.int64)])
    rows = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int64()), mask=pa.array(~runs))
    return pa.Table.from_arrays([
        pa.array([r.file for r in rejects], pa.string()),
        pa.array([r.reason for r in rejects], pa.string()),
        pa.array([None if run else int(r.row) for r, run in zip(rejects, runs)], pa.int64()),
        rows,
        pa.array([None if run else list(r.fields.items()) for r, run in zip(rejects, runs)],
                 pa.map_(pa.string(), pa.string())),
    ], names=["file", "reason", "row", "rows", "fields"])


def _rejects_of(table: Any) -> list:
    """The rejects of :func:`_rejects_table`."""
    from telemetry.readers import Reject, RejectRun

    rows = table.column("rows").combine_chunks()
    return [
        Reject(file, row, reason, dict(fields)) if row is not None
        else RejectRun(file, reason, rows[i].values.to_numpy(zero_copy_only=False))
        for i, (file, reason, row, fields) in enumerate(zip(*(
            table.column(name).to_pylist() for name in ("file", "reason", "row", "fields"))))
    ]


# --- the worker plugin ---------------------------------------------------------------


class Warmup(WorkerPlugin):
    """Loads the compiled kernels once per worker, from the cache directory the client
    names (``TELEMETRY_CACHE_DIR``; the worker's own default otherwise): 16 made-up
    records through a Job with a throwaway key, so the first task of a run does not
    pay for compiling or loading them. Turns transparent huge pages off in a worker
    process of its own (:func:`telemetry.allocators.no_huge_pages`)."""

    name = "telemetry-warmup"

    def __init__(self, cache_dir: str | None) -> None:
        self.cache_dir = cache_dir
        self.client_pid = os.getpid()

    def setup(self, worker) -> None:
        from telemetry.allocators import no_huge_pages

        if self.cache_dir:
            os.environ.setdefault("TELEMETRY_CACHE_DIR", self.cache_dir)  # before kernels._jit is imported
        if os.getpid() != self.client_pid:  # a worker in the client's process (a cluster of threads)
            no_huge_pages()  # leaves the process as its user set it, as the Python API does
        warm()


def warm() -> None:
    """The kernels of a run, called once on a few made-up records (fictional numbers)."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa

    from telemetry.config import make_options
    from telemetry.keys import Keyring
    from telemetry.readers import ReadBatch
    from telemetry.schema import CANONICAL

    start = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)
    rows = [
        dict(record_id=f"warm-{i}", channel=("voice", "sms")[i % 2], direction="outbound", tenant="t",
             start_time=start + dt.timedelta(minutes=i),
             answer_time=start + dt.timedelta(minutes=i, seconds=3),
             end_time=start + dt.timedelta(minutes=i, seconds=60), pdd_ms=900 + i, duration_ms=57_000,
             source=f"+44 7700 900{i:03d}",
             destination=("+1 555 0100", "07700 900123", "anonymous", "sip:+15550101@example.com")[i % 4],
             status=("answered", "delivered", "busy", "failed")[i % 4], sip_code=(200, 200, 486, 503)[i % 4],
             q850_cause=16, route=f"carrier-{i % 3}", source_ip="192.0.2.1", mos=4.1, jitter_ms=3.5,
             packet_loss_pct=0.2, rtt_ms=40.0, location="cell-1", roaming=False, mno="mno",
             device_type="phone")
        for i in range(16)
    ]
    batch = pa.RecordBatch.from_pylist(rows, schema=CANONICAL)
    read = ReadBatch(batch, np.arange(1, batch.num_rows + 1, dtype=np.int64), [], "warm-up")
    Job(Keyring.generate(), make_options(region="GB", emit_records=True)).work(read)
