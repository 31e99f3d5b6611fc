# foldserve: the HTTP service and its shipped models in one image.
#
#   docker build --network host -t foldserve .                        # python:3.11-slim-bookworm
#   docker build --network host --build-arg BASE_IMAGE=local/python:3.11-bookworm -t foldserve .
#   docker build --network host --build-arg EXTRAS=onnx,openvino,ray -t foldserve:ray .   # for KubeRay
#
# The base image only needs python3 (3.11) with the venv module. Torch comes from PyPI as the Linux wheel,
# which carries its CUDA libraries: the same image runs on CPU, and on an NVIDIA GPU when the container is
# given one (see docker-compose.gpu.yml). Written for the classic builder as well as BuildKit.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Stage 1: the runtime dependency list, taken from pyproject.toml, with the optional extras named in EXTRAS
# (comma-separated; "onnx" and "openvino": the runtimes chosen among at load, "ray": the Ray Serve deployment).
# Only its output is copied on, so edits to other parts of pyproject.toml (tool settings, dev extras) leave the
# large dependency layer below cached.
FROM ${BASE_IMAGE} AS requirements
ARG EXTRAS="onnx,openvino"
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -c "import os, tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; \
extras = [e for e in os.environ['EXTRAS'].split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" > /tmp/requirements.txt

FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Dependencies first, in their own layer: about 5 GB (torch and its CUDA wheels), rebuilt only when the
# dependency list changes. The check after the install fails the build if the pins were not honoured.
COPY --from=requirements /tmp/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && pip install -r /tmp/requirements.txt \
    && python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__); \
assert torch.__version__.split('+')[0] == '2.14.1' and torchvision.__version__.split('+')[0] == '0.29.1'" \
    && rm /tmp/requirements.txt

# The service runs as an unprivileged user; the code and models it reads stay owned by root.
RUN groupadd --system --gid 10001 foldserve \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/foldserve \
    --shell /usr/sbin/nologin foldserve \
    && install -d -o foldserve -g foldserve /home/foldserve/.cache/foldserve
# ^ the runtime cache (FOLDSERVE_RUNTIME_CACHE): exported ONNX graphs, kept in a volume by docker-compose.yml

WORKDIR /srv/foldserve
COPY app/ app/
# The shipped checkpoints; mount a volume over /srv/foldserve/model_store to serve others. safetensors writes
# weights with mode 0600, which the service user could not read: make everything world-readable.
COPY model_store/ model_store/
RUN chmod -R a+rX app model_store && python3 -m compileall -q app

ENV FOLDSERVE_MODEL_STORE=/srv/foldserve/model_store \
    FOLDSERVE_HOST=0.0.0.0 \
    FOLDSERVE_PORT=8000

USER foldserve
# HTTP (/predict, /v2, /metrics) and the Open Inference Protocol's gRPC service (FOLDSERVE_GRPC_PORT)
EXPOSE 8000 8001

# Healthy once /readyz answers 200: every model has finished loading and one is ready. urlopen raises on a 503.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('FOLDSERVE_PORT', '8000'), timeout=4)"]

CMD ["python3", "-m", "app", "serve"]
