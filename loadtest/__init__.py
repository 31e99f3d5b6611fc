"""Load generator for foldserve: the collapsed against the original network, end to end over HTTP.

``python -m loadtest`` runs one scenario per command (``comparison``, ``overload``, ``soak``, or a
single ``run``) through one of two engines (``httpx``, always available, or ``hey``, a Go load
generator), and writes a JSON report with every figure, a markdown summary and PNG plots.

Modules, one concern each:

- :mod:`loadtest.stats`: percentiles and summaries of per-request records;
- :mod:`loadtest.promtext`: the server's ``/metrics``, histogram quantiles from bucket deltas;
- :mod:`loadtest.engines`: the load engines (closed and open loop, bounded by count and duration);
- :mod:`loadtest.images`: real digit images encoded as PNG;
- :mod:`loadtest.targets`: request targets (``/predict`` per variant, ``/healthz``);
- :mod:`loadtest.measure`: one measured run (engine + server metrics before and after);
- :mod:`loadtest.scenarios`: comparison, overload and soak;
- :mod:`loadtest.report` and :mod:`loadtest.plots`: JSON, markdown and PNG output;
- :mod:`loadtest.server`: start and stop a local ``python -m app serve`` process.
"""

__all__: list[str] = []
