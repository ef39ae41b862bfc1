# syntax=docker/dockerfile:1
#
# booking-gateway container image.
#
#   docker build -t booking-gateway:0.1.0 .
#   docker run --rm -p 8080:8080 booking-gateway:0.1.0 booking-gateway serve --sandbox
#
# Three stages, so each layer is rebuilt only when its own inputs change:
#   deps     virtualenv with the runtime dependencies only ([project].dependencies, versions
#            pinned by constraints.txt; the `test` extra never enters the image)
#   build    the application wheel
#   runtime  slim Python, the deps venv as one layer, the app as a small layer on top,
#            everything byte-compiled, running as a numeric non-root user
#
# Kubernetes ignores HEALTHCHECK and runs its own probes (k8s/deployment.yaml).

FROM python:3.12-slim-trixie AS deps

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml constraints.txt ./
# Only [project].dependencies go in; constraints.txt pins them (its test pins are unused here).
# unchecked-hash .pyc files stay valid whatever mtimes COPY gives the sources, and the
# read-only root filesystem in Kubernetes means nothing could be compiled at run time.
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep='\n')" > requirements.txt \
 && python -m pip install --no-cache-dir --no-compile -c constraints.txt -r requirements.txt \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib


FROM deps AS build

COPY README.md openapi.yaml ./
COPY service ./service
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


FROM python:3.12-slim-trixie AS runtime

LABEL org.opencontainers.image.title="booking-gateway" \
      org.opencontainers.image.description="Availability and booking gateway in front of the Vyte scheduling API"

# A fixed numeric uid/gid, so Kubernetes can check runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 booking-gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin booking-gateway \
 && install -d -o 10001 -g 10001 -m 0750 /app /app/data

COPY --from=deps /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --no-deps --no-compile /wheels/*.whl \
 && python -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib/python3.12/site-packages/service

# The service listens on 127.0.0.1 by default; in a container it must accept outside traffic.
# STORE_URL is set explicitly: a single container keeps SQLite under /app/data (mount a volume
# there to keep it); Kubernetes overrides it with Redis (k8s/configmap.yaml).
ENV HOST=0.0.0.0 \
    PORT=8080 \
    STORE_URL=sqlite:///./data/booking-gateway.sqlite3

WORKDIR /app
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/livez', timeout=4)"]

CMD ["booking-gateway", "serve"]
