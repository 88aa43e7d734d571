"""Continuous mode (SPEC section 9): ``telemetry stream``.

A driver of the batch pipeline's own parts: files are read by the readers,
pseudonymized and aggregated by :class:`telemetry.engine.Job` on an engine,
their partial states merged into per-window :class:`~telemetry.metrics.State`
objects and released by :func:`telemetry.metrics.release` (under DP: per-window
:class:`~telemetry.metrics.dp.Contributions`, released once by
:func:`telemetry.metrics.dp.release`); only discovery (:mod:`.files`), event-time
windows and revisions (:mod:`.book`, :mod:`.dpwindow`) and the checkpoint
(:mod:`.store`) are the stream's own. docs/stream.md is the
operator's page.
"""
