"""Run by test_ray_serve.py in its own process: a one-node Ray cluster on 127.0.0.1 serving ``build_app``.

Arguments: the proxy's port, the metrics port, Ray's temporary folder. Prints ``serving`` once the application
runs (its replica has loaded the store), then serves until its standard input closes, and shuts Ray down.
"""

from __future__ import annotations

import os
import sys

# Before Ray is imported: keep the node on 127.0.0.1 (Ray otherwise rewrites it to the machine's outward address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray
from ray import serve

from app.serving.ray import build_app


def main(http_port: int, metrics_port: int, temp_dir: str) -> None:
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=temp_dir, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        options = {"metrics_port": metrics_port, "metrics_root": os.path.join(temp_dir, "metrics")}
        serve.run(build_app(options), name="foldserve", route_prefix="/")
        print("serving", flush=True)
        sys.stdin.read()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
