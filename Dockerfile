# microfair on the official Apache Airflow image, plus the project and the system tools its stages call.
# One image for every service of docker-compose.yaml: the Airflow components (`airflow …`), the Celery
# workers, the dask scheduler and workers (`dask …`) and maintenance (`microfair …`): the same entry points
# as the tested path (tests/integration/test_celery_stack.py, tests/integration/test_distributed.py).
#
#   docker build -t microfair:latest .
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# The dashboard's front-end assets (htmx), built by the same step as `make assets`:
# npm ci on the committed lock file, so the running dashboard needs no CDN.
FROM ${AIRFLOW_IMAGE} AS assets
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER root
# npm, from the one list of system packages (deploy/system-packages.txt, use "assets").
COPY deploy/system-packages.txt deploy/install-system-packages.sh /tmp/deploy/
RUN /tmp/deploy/install-system-packages.sh --for assets \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
USER airflow
WORKDIR /build
COPY --chown=airflow:root plugins/microfair_dashboard ./plugins/microfair_dashboard
RUN python plugins/microfair_dashboard/build_assets.py

FROM ${AIRFLOW_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

USER root
# The system tools the stages call, from the same list as `make demo`, `make test` and .ci/run
# (deploy/system-packages.txt, use "image"): restic (3-2-1 backups), openssh-client (SFTP off-site
# target), rsync, a JRE for the optional Bio-Formats reader. The versions come from the base image's
# Debian release (pinned by the image tag above).
COPY deploy/system-packages.txt deploy/install-system-packages.sh /tmp/deploy/
RUN /tmp/deploy/install-system-packages.sh --for image \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /tmp/deploy \
    && mkdir -p /etc/microfair /data \
    && chown -R airflow:root /data

USER airflow
WORKDIR /opt/microfair
# The lock file pins every package; pinning apache-airflow to the image's version (AIRFLOW_VERSION is set
# by the base image) makes a lock/image mismatch fail the build instead of replacing Airflow.
COPY --chown=airflow:root requirements.lock pyproject.toml README.md ./
RUN uv pip install --no-cache "apache-airflow==${AIRFLOW_VERSION}" -r requirements.lock
COPY --chown=airflow:root include ./include
COPY --chown=airflow:root dags ./dags
COPY --chown=airflow:root plugins ./plugins
COPY --from=assets --chown=airflow:root /build/plugins/microfair_dashboard/static/vendor ./plugins/microfair_dashboard/static/vendor
RUN uv pip install --no-cache --no-deps . \
    && microfair --help > /dev/null \
    && python -c "import microfair_airflow, distributed, asyncpg, psycopg2"

# Smoke check: the same demo as `make demo` and tests/integration/test_wheel.py (--quick: microfair_ingest
# over the sample landing zone, SQLite, a local dask cluster), run by the installed package outside the
# source folder, so its DAG files and dashboard plugin come from the package (microfair_airflow.bundle).
WORKDIR /tmp
RUN python -m microfair.demo --root /tmp/microfair-smoke --quick \
    && rm -rf /tmp/microfair-smoke
WORKDIR /opt/microfair

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/microfair/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/microfair/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    MICROFAIR_CONFIG=/etc/microfair/microfair.yaml \
    PYTHONPATH=/opt/microfair/include

# No image-wide HEALTHCHECK: each service in docker-compose.yaml checks its own component.
