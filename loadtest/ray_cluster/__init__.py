"""``make ray-test``: foldserve on a real two-node Ray cluster on this machine (scripts/ray-test.sh runs it).

Phases, each bounded in time, with every process it starts stopped at the end, whatever happens
(:mod:`loadtest.ray_cluster.__main__`):

1. the single-process service (127.0.0.1:18480), then a two-node cluster started with deploy/ray/ray.env (head
   127.0.0.2, worker 127.0.0.3: both loopback; one CPU each; an HAProxy on each node), deploy/ray/serve.yaml at
   two replicas and a Ray Serve no-op deployment beside it (:mod:`~loadtest.ray_cluster.cluster`);
2. every model, both variants, every examples/digit-*.png through HAProxy and through the single process: the
   answers must be identical, each host's metrics port must show its replica answered, and headers over the
   limits get the single process's 431 (:mod:`~loadtest.ray_cluster.checks`);
3. Prometheus with deploy/prometheus/prometheus-ray.yml: both jobs' targets up, the cluster's count of answers
   equal to what was sent, the recording rules and Ray's serve metrics present;
4. the single process, foldserve's replicas and the no-op deployment side by side with hey, concurrency 1 and 16
   (:mod:`~loadtest.ray_cluster.speed`);
5. under a bounded load: one replica's process killed, then the worker node killed (and started again): failed
   requests counted (no retries), time until two replicas serve again, and every server HAProxy routes to ready
   while the replacement loads; then the worker node's HAProxy alone killed: failed requests, and the time until
   Ray has started another that routes to both replicas; then autoscaling between one and two replicas
   (:mod:`~loadtest.ray_cluster.faults`);
6. the cluster stopped (and its HAProxies), started again without ray.env (Ray's Python proxy on each node), the
   same three measured again.

Exit code 0 when every aim held; the numbers are printed either way, and written to ``results.json``.
"""
