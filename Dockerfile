# microfair on the official Airflow image, with the system tools the stages call.
# Same entry points as the tested path: `airflow …` commands and the `microfair` CLI.
FROM apache/airflow:3.3.2-python3.11

USER root
# restic (3-2-1 backups), ssh client (SFTP off-site target), rsync, a JRE for the optional Bio-Formats reader.
RUN apt-get update \
    && apt-get install -y --no-install-recommends restic openssh-client rsync openjdk-17-jre-headless \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

USER airflow
WORKDIR /opt/microfair
COPY --chown=airflow:root requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir uv \
    && uv pip install --no-cache --python "$(command -v python)" -r requirements.lock
COPY --chown=airflow:root include ./include
COPY --chown=airflow:root dags ./dags
COPY --chown=airflow:root plugins ./plugins
RUN uv pip install --no-cache --python "$(command -v python)" --no-deps -e .

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/microfair/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/microfair/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    MICROFAIR_CONFIG=/etc/microfair/microfair.yaml \
    PYTHONPATH=/opt/microfair/include

HEALTHCHECK --interval=30s --timeout=10s --retries=5 CMD ["microfair", "--help"]
