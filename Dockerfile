# A cache node (the guide's "Docker Deployment"): `mlcache serve` creates and sweeps the L3
# table and serves the levels' Prometheus metrics on port 8000.  Applications install the
# library itself (`pip install mlcache`) and share the node's Redis and PostgreSQL.
#
#   docker build -t mlcache .        then see docker-compose.yml and deploy/kubernetes.yaml
#
# The build stage compiles the Cython extensions into a wheel; the image itself has no compiler.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Not root: the node needs no privilege.
USER nobody
EXPOSE 8000
# Settings: REDIS_URL and POSTGRES_URL from the environment, or the guide's config dict as
# JSON mounted and named with --config.  SIGTERM stops it cleanly.
CMD ["python", "-m", "mlcache", "serve"]
