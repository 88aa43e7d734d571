"""Engines: how batches are spread over threads or workers.

Every engine runs the same :class:`Job` — read batches → :meth:`Job.work`
(kernels → partial state per batch) → merge — and hands partial results to
the pipeline in input order, so sinks see the same files whichever engine ran.
An engine only decides where ``Job.work`` runs; the state merge is associative
and commutative, so results do not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from telemetry.config import Options
from telemetry.keys import Keyring


class Partial(NamedTuple):
    """What one read batch contributes."""

    state: Any  # telemetry.metrics state of the batch's good records (DP: metrics.dp.Contributions)
    records: Any  # pa.RecordBatch of pseudonymized records, or None
    rejects: list  # telemetry.readers.Reject and RejectRun
    records_in: int
    records_ok: int
    opted_out: int
    rewritten: dict[str, int]  # dimension rewrites (telemetry.dimensions) by "column kind"


@dataclass
class Job:
    """The per-batch work, built once per run and shipped to every worker."""

    keyring: Keyring
    options: Options
    _ready: dict = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict:
        return {"keyring": self.keyring, "options": self.options, "_ready": {}}

    def _parts(self):
        if not self._ready:
            from telemetry.metrics import AggSpec
            from telemetry.optout import OptOut
            from telemetry.pseudonyms import Pseudonymizer
            from telemetry.ratedeck import RateDeck

            from telemetry.metrics.dp import Params, preload

            opts = self.options
            dp = Params.from_options(opts)
            if dp is not None:
                preload()  # OpenDP, which only the release needs, imported meanwhile
            self._ready.update(
                pseudonymizer=Pseudonymizer(self.keyring, region=opts.region),
                spec=AggSpec(window=opts.window, by=opts.by, short_call_s=opts.short_call_s),
                dp=dp,
                dp_salt=_dp_salt(self.keyring) if dp is not None else None,
                deck=RateDeck.load(opts.rate_deck) if opts.rate_deck else None,
                opt_out=OptOut.load(opts.opt_out) if opts.opt_out else None,
            )
        return self._ready

    @property
    def spec(self):
        return self._parts()["spec"]

    @property
    def dp(self):
        """The run's :class:`telemetry.metrics.dp.Params`, or None (k-threshold)."""
        return self._parts()["dp"]

    @property
    def columns(self) -> frozenset[str] | None:
        """Canonical columns this job reads (None: all, for ``emit_records``)."""
        return None if self.options.emit_records else self.spec.input_columns()

    def prepare_only(self) -> None:
        self._parts()

    def work(self, read) -> Partial:
        from telemetry.metrics import accumulate
        from telemetry.prepare import prepare
        from telemetry.readers import rejected

        parts = self._parts()
        prepared = prepare(
            read,
            parts["pseudonymizer"],
            rate_deck=parts["deck"],
            opt_out=parts["opt_out"],
            emit_records=self.options.emit_records,
            ip_mode=self.options.ip_mode,
        )
        if parts["dp"] is None:
            state = accumulate(prepared.batch, parts["spec"])
        else:
            from telemetry.metrics import dp

            state = dp.accumulate(prepared.batch, parts["spec"], parts["dp"], parts["dp_salt"])
        n_in = read.batch.num_rows + rejected(read.rejects)
        return Partial(
            state,
            prepared.records,
            list(read.rejects) + prepared.rejects,
            n_in,
            prepared.batch.num_rows,
            prepared.opted_out,
            prepared.rewritten,
        )

    def work_item(self, item) -> list[Partial]:
        """:meth:`work` of a read batch, or of each batch of a
        :class:`~telemetry.readers.Piece`, read on this thread as it goes."""
        from telemetry.readers import Piece

        if isinstance(item, Piece):
            return [self.work(read) for read in item.read()]
        return [self.work(item)]


def _dp_salt(keyring: Keyring) -> int:
    from telemetry.metrics.dp import subkey_salt

    return subkey_salt(keyring.current.key)


class Engine(Protocol):
    name: str

    def run(self, job: Job, reads: Iterator) -> Iterator[Partial]:
        """Yield one Partial per read batch, in input order; ``reads`` as
        :func:`telemetry.readers.plan_inputs` yields them (batches and pieces)."""

    def close(self) -> None:
        """Release what the engine started (threads end with each run; a cluster here)."""


def get_engine(name: str, threads: int, *, scheduler: str | None = None, workers: int = 0,
               client: Any = None) -> Engine:
    """The engine ``name``: ``local`` with ``threads`` threads, or ``dask`` on the cluster
    of ``client``, at ``scheduler``, or of ``workers`` local processes (SPEC section 10)."""
    if name == "local":
        from telemetry.engine.local import LocalEngine

        return LocalEngine(threads)
    from telemetry.errors import ConfigError

    if name == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--engine dask needs dask.distributed, which is not installed: pip install 'telemetry[dask]'"
            ) from None
        from telemetry.engine.dask import DaskEngine

        return DaskEngine(scheduler=scheduler, workers=workers, client=client)
    raise ConfigError(f"engine {name!r} is not available; use --engine local or dask")
