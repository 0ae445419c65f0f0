"""microfair as an Airflow provider: the provider info Airflow validates, the connection types it registers,
``Connection.get_hook()`` for each of them, and each hook's Test button against a local service."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

pytest.importorskip("airflow.sdk")

import jsonschema  # noqa: E402
from airflow.sdk import Connection  # noqa: E402

from microfair_airflow import provider  # noqa: E402
from microfair_airflow.provider import get_provider_info, ui_field_behaviour  # noqa: E402

AIRFLOW = Path(jsonschema.__file__).parents[1] / "airflow"  # site-packages/airflow
TYPES = {"irods": "IrodsHook", "dask": "DaskHook", "restic": "ResticHook", "biostudies": "BiostudiesHook",
         "datacite": "DataciteHook", "elabftw": "ElabftwHook", "dataverse": "DataverseHook", "zenodo": "ZenodoHook"}
SECRET = "pw-for-the-provider-test-9f3"


def schema(name: str) -> dict:
    return json.loads((AIRFLOW / name).read_text())


def test_the_provider_info_validates_against_airflows_schemas():
    info = get_provider_info()
    jsonschema.validate(info, schema("provider_info.schema.json"))  # what the providers manager checks
    # The stricter development schema (provider.yaml) knows conn-fields and ui-field-behaviour in detail.
    strict = schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], strict)
    behaviour = schema("customized_form_field_behaviours.schema.json")
    for conn_type in TYPES:
        jsonschema.validate(ui_field_behaviour(conn_type), behaviour)
    assert {c["connection-type"]: c["hook-class-name"].rsplit(".", 1)[1] for c in info["connection-types"]} == TYPES
    modules = {c["hook-class-name"].rsplit(".", 1)[0] for c in info["connection-types"]}
    assert set(info["hooks"][0]["python-modules"]) == modules


def test_a_broken_provider_info_fails_the_schemas():
    """The validation above can fail: a connection type without its hook class, a form field without a type."""
    info = get_provider_info()
    del info["connection-types"][0]["hook-class-name"]
    with pytest.raises(jsonschema.ValidationError, match="hook-class-name"):
        jsonschema.validate(info, schema("provider_info.schema.json"))
    info = get_provider_info()
    del info["connection-types"][0]["conn-fields"]["auth_scheme"]["schema"]["type"]
    with pytest.raises(jsonschema.ValidationError, match="'type' is a required property"):
        jsonschema.validate(info["connection-types"], schema("provider.yaml.schema.json")["properties"]["connection-types"])


def test_the_entry_point_and_the_package_name_match_the_installed_distribution():
    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("microfair_airflow.")]
    assert ep.value == "microfair_airflow.provider:get_provider_info" and ep.load() is get_provider_info
    dist = distribution("microfair")
    info = get_provider_info()
    assert info["package-name"] == dist.metadata["name"] and info["versions"] == [dist.version]


def test_the_providers_manager_registers_every_connection_type():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    for conn_type, cls in TYPES.items():
        info = hooks[conn_type]
        assert (info.package_name, info.hook_class_name.rsplit(".", 1)[1], info.connection_testable) == \
            ("microfair", cls, True)
    ui = ProvidersManager()  # what the API server gives the connection form (declared: no wtforms needed)
    assert set(TYPES) <= set(ui.field_behaviours)
    assert ui.field_behaviours["irods"]["relabeling"]["schema"] == "Zone"
    assert "extra__irods__session_factory" in ui.connection_form_widgets
    assert ui.connection_form_widgets["extra__restic__aws_secret_access_key"].is_sensitive


@pytest.mark.parametrize("conn_type", sorted(TYPES))
def test_get_hook_builds_our_hook_for_the_connection(conn_type):
    hook = Connection(conn_id=f"{conn_type}_x", conn_type=conn_type, host="h").get_hook()
    assert type(hook).__name__ == TYPES[conn_type]
    assert getattr(hook, hook.conn_name_attr) == f"{conn_type}_x"
    assert type(hook).get_ui_field_behaviour() == ui_field_behaviour(conn_type)


def test_airflow_lists_the_provider_and_loads_it_without_deprecation_warnings(tmp_path):
    """One subprocess: ``airflow providers list``; one more: a fresh providers manager, warnings recorded.

    A hook whose form is not declared in the provider info makes Airflow call its deprecated
    ``get_ui_field_behaviour()`` (with an AirflowProviderDeprecationWarning when wtforms is installed).
    """
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    listed = {p["package_name"]: p for p in json.loads(out.stdout[out.stdout.index("["):])}
    assert listed["microfair"]["version"] == distribution("microfair").version
    probe = ("import json, warnings\n"
             "warnings.simplefilter('always')\n"
             "with warnings.catch_warnings(record=True) as seen:\n"
             "    from airflow.providers_manager import ProvidersManager\n"
             "    pm = ProvidersManager(); pm.initialize_providers_hooks()\n"
             "    _ = pm.connection_form_widgets, pm.field_behaviours\n"
             "print(json.dumps([str(w.message) for w in seen if 'microfair' in str(w.message)]))\n"
             "print(json.dumps(sorted(pm.field_behaviours)))\n")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    warned, forms = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert warned == [] and set(TYPES) <= set(forms)


def test_the_provider_module_imports_nothing_heavy():
    """The providers manager imports it in every Airflow process: no domain stack, no hooks."""
    probe = ("import sys; import microfair_airflow.provider\n"
             "print(sorted(m for m in sys.modules if m.startswith(('microfair', 'airflow', 'irods', 'distributed'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         cwd=Path(provider.__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == ["microfair_airflow", "microfair_airflow.provider"]


# -- the Test buttons ------------------------------------------------------------------------------------

def conn_env(monkeypatch, tmp_path, conn_id: str, **fields) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_dask_test_connection_reaches_a_scheduler_and_reports_a_dead_one(monkeypatch, tmp_path):
    from distributed import LocalCluster

    from microfair_airflow.hooks.dask import DaskHook

    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0",
                      host="127.0.0.1", protocol="tcp") as cluster:
        host, port = cluster.scheduler_address.removeprefix("tcp://").rsplit(":", 1)
        conn_env(monkeypatch, tmp_path, "dask_up", conn_type="dask", host=host, port=int(port))
        ok, message = DaskHook("dask_up").test_connection()
    assert ok and message == f"connected to the dask scheduler at tcp://{host}:{port}: 1 worker(s)"
    conn_env(monkeypatch, tmp_path, "dask_down", conn_type="dask", host="127.0.0.1", port=9)
    ok, message = DaskHook("dask_down").test_connection(timeout=2)
    assert not ok and "no dask scheduler answered at tcp://127.0.0.1:9 within 2 s" in message


def test_restic_test_connection_opens_the_repository_and_hides_the_password(monkeypatch, tmp_path):
    import shutil

    from microfair_airflow.hooks.restic import ResticHook

    if not shutil.which("restic"):
        pytest.skip("restic is not installed")
    repo = tmp_path / "repo"
    env = {"PATH": "/usr/bin:/bin", "RESTIC_PASSWORD": SECRET}
    subprocess.run(["restic", "init", "--repo", str(repo), "--no-cache"], check=True, capture_output=True, env=env)
    repo_id = json.loads(subprocess.run(["restic", "--repo", str(repo), "--no-cache", "cat", "config"], check=True,
                                        capture_output=True, env=env).stdout)["id"]
    conn_env(monkeypatch, tmp_path, "restic_ok", conn_type="restic", password=SECRET,
             extra={"repository": str(repo)})
    ok, message = ResticHook(restic_conn_id="restic_ok").test_connection()
    assert ok and message == f"opened restic repository {repo} (id {repo_id[:8]}…)"
    wrong = SECRET[::-1]
    conn_env(monkeypatch, tmp_path, "restic_bad", conn_type="restic", password=wrong, extra={"repository": str(repo)})
    ok, message = ResticHook(restic_conn_id="restic_bad").test_connection()
    assert not ok and "wrong repository password" in message and wrong not in message
    conn_env(monkeypatch, tmp_path, "restic_none", conn_type="restic", password=SECRET)
    ok, message = ResticHook(restic_conn_id="restic_none").test_connection()
    assert not ok and "names no repository: set its extra 'repository'" in message


def test_restic_credentials_come_from_the_targets_connection_with_the_facility_file_as_default(monkeypatch, tmp_path):
    from microfair.config.backup import BackupTarget, SftpSettings
    from microfair_airflow.hooks.restic import ResticHook

    target = BackupTarget(name="nas", medium="remote-server", repository="sftp:backup@nas:/srv/restic",
                          connection_id="restic_nas", sftp=SftpSettings(port=2222, identity_file="/k/id",
                                                                        known_hosts_file="/k/hosts"))
    conn_env(monkeypatch, tmp_path, "restic_nas", conn_type="restic", password=SECRET,
             extra={"known_hosts": "/conn/hosts", "aws_access_key_id": "AKIA-TEST", "env": {"RESTIC_X": "1"}})
    c = ResticHook(target_name="nas").get_credentials(target)
    assert (c.password, c.password_file, c.ssh_identity_file, c.ssh_known_hosts_file, c.ssh_port) == \
        (SECRET, None, "/k/id", "/conn/hosts", 2222)
    assert c.env == {"RESTIC_X": "1", "AWS_ACCESS_KEY_ID": "AKIA-TEST"} and SECRET not in repr(c)


def test_biostudies_test_connection_logs_in(monkeypatch, tmp_path):
    from microfair.standins.biostudies import BiostudiesStandin
    from microfair_airflow.hooks.biostudies import BiostudiesHook

    with BiostudiesStandin(tmp_path / "bs", {"me@facility.org": SECRET}) as bs:
        conn_env(monkeypatch, tmp_path, "bs_ok", conn_type="biostudies", host=bs.url, login="me@facility.org",
                 password=SECRET)
        ok, message = BiostudiesHook("bs_ok").test_connection()
        assert ok and message == f"logged in to BioStudies at {bs.url} as me@facility.org"
        conn_env(monkeypatch, tmp_path, "bs_bad", conn_type="biostudies", host=bs.url, login="me@facility.org",
                 password="not-" + SECRET)
        ok, message = BiostudiesHook("bs_bad").test_connection()
    assert not ok and "refused the login of 'me@facility.org' (HTTP 401)" in message and SECRET not in message


def test_datacite_test_connection_reads_the_client_record(monkeypatch, tmp_path):
    import requests

    from microfair.standins.datacite import DataciteStandin
    from microfair_airflow.hooks.datacite import DataciteHook

    with DataciteStandin("EMBL.FACILITY", SECRET, name="Light Microscopy Facility") as dc:
        conn_env(monkeypatch, tmp_path, "dc_ok", conn_type="datacite", host=dc.url, login="EMBL.FACILITY",
                 password=SECRET)
        ok, message = DataciteHook("dc_ok").test_connection()
        assert ok and message == f"DataCite at {dc.url} knows repository EMBL.FACILITY (Light Microscopy Facility)"
        assert dc.log[-1] == ("GET", "/clients/EMBL.FACILITY", 200)
        conn_env(monkeypatch, tmp_path, "dc_bad", conn_type="datacite", host=dc.url, login="EMBL.FACILITY",
                 password=SECRET + "x")
        ok, message = DataciteHook("dc_bad").test_connection()
        assert not ok and "DataCite refused repository 'EMBL.FACILITY' (HTTP 401)" in message
        assert SECRET not in message and dc.log[-1] == ("GET", "/clients/EMBL.FACILITY", 401)
        # the record as DataCite documents it (lower-case id, either case found); another repository's: 404
        record = requests.get(f"{dc.url}/clients/embl.facility", auth=("EMBL.FACILITY", SECRET), timeout=10)
        assert record.headers["Content-Type"] == "application/vnd.api+json"
        assert record.json()["data"]["id"] == "embl.facility" and record.json()["data"]["type"] == "clients"
        other = requests.get(f"{dc.url}/clients/embl.other", auth=("EMBL.FACILITY", SECRET), timeout=10)
        assert other.status_code == 404


def test_elabftw_test_connection_accepts_a_key_and_hides_a_refused_one(monkeypatch, tmp_path):
    from microfair.standins.elabftw import ElabftwStandin
    from microfair_airflow.hooks.elabftw import ElabftwHook

    with ElabftwStandin({SECRET: "write"}) as eln:
        conn_env(monkeypatch, tmp_path, "eln_ok", conn_type="elabftw", host=eln.url, password=SECRET)
        ok, message = ElabftwHook("eln_ok").test_connection()
        assert ok and message == f"eLabFTW {eln.version} at {eln.url} accepted the API key"
        conn_env(monkeypatch, tmp_path, "eln_bad", conn_type="elabftw", host=eln.url, password=SECRET + "x")
        ok, message = ElabftwHook("eln_bad").test_connection()
        assert not ok and "401" in message and SECRET not in message
    client, why = ElabftwHook.client_or_reason("no_such_eln_conn")
    assert client is None and "no_such_eln_conn" in why
