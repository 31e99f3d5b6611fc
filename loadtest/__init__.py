"""Load generator for foldserve: the collapsed against the original network, end to end over HTTP.

``python -m loadtest`` runs one scenario per command (``comparison``, ``overload``, ``soak``, a single
``run``, ``flood``, ``grpc``) through one of two engines (``httpx``, always available, or ``hey``, a Go load
generator), and writes a JSON report with every figure, a markdown summary and PNG plots.
``versus`` measures foldserve against the reference handler (``python -m loadtest reference``) in the
same run, CPU per answer included; ``memory`` gives the PSS of each worker count.

Modules, one concern each:

- :mod:`loadtest.stats`: percentiles and summaries of per-request records;
- :mod:`loadtest.promtext`: the server's ``/metrics``, histogram quantiles from bucket deltas;
- :mod:`loadtest.engines`: the load engines (closed and open loop, bounded by count and duration);
- :mod:`loadtest.images`: real digit images encoded as PNG;
- :mod:`loadtest.targets`: request targets (``/predict`` per variant, ``/healthz``);
- :mod:`loadtest.measure`: one measured run (engine + server metrics before and after);
- :mod:`loadtest.scenarios`: comparison, overload, soak, versus (against the reference), memory, flood, grpc;
- :mod:`loadtest.reference`: the minimal reference server foldserve is measured against;
- :mod:`loadtest.proctree`: a server's process tree from ``/proc``: CPU time, RSS and PSS;
- :mod:`loadtest.machine`: cores, CPU model, load average and hey's version for reports;
- :mod:`loadtest.report` and :mod:`loadtest.plots`: every command's JSON, markdown and PNG output
  (:mod:`loadtest.versus_report` renders versus and memory);
- :mod:`loadtest.server`: start and stop a local ``python -m app serve`` (or reference) process;
- :mod:`loadtest.cli`: the command line, one sub-command per scenario.
"""

__all__: list[str] = []
