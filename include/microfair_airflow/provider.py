"""microfair as an Airflow provider: its connection types, their form fields and their Test buttons.

Airflow finds this module through the ``apache_airflow_provider`` entry point in ``pyproject.toml``;
``airflow providers list`` then lists ``microfair``, ``Connection.get_hook()`` knows the connection types
below, and the Connections page offers each of them with its own form and a Test button.

The form of each type is declared here (``ui-field-behaviour`` and ``conn-fields``), as Airflow 3.2+
expects, so Airflow does not have to import the hooks (nor their domain stack) to draw a form. The
hooks' ``get_ui_field_behaviour()`` return the same declaration, for tools that ask the hook.
This module imports nothing heavy: the providers manager loads it in every Airflow process.
"""

from __future__ import annotations

from typing import Any

PACKAGE = "microfair"
HOOKS = "microfair_airflow.hooks"
_STRING = {"type": ["string", "null"]}


def _field(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {**_STRING, **schema}}


def _secret(label: str, description: str) -> dict[str, Any]:
    return _field(label, description, format="password")


#: connection type -> the hook, its name in the UI, the standard fields it hides or relabels, its extras.
CONNECTION_TYPES: dict[str, dict[str, Any]] = {
    "irods": {
        "hook-class-name": f"{HOOKS}.irods.IrodsHook",
        "hook-name": "iRODS",
        "ui-field-behaviour": {
            "hidden-fields": [],
            "relabeling": {"schema": "Zone", "login": "iRODS user"},
            "placeholders": {"host": "irods.facility.local", "port": "1247", "login": "microfair",
                             "schema": "facilityZone", "extra": '{"client_server_policy": "CS_NEG_REQUIRE"}'},
        },
        "conn-fields": {
            "auth_scheme": _field("Authentication scheme", "native (default) or pam_password (needs TLS)",
                                  enum=["native", "pam_password"]),
            "client_server_policy": _field(
                "Client-server policy", "CS_NEG_REQUIRE turns TLS on; CS_NEG_REFUSE is plain TCP",
                enum=["CS_NEG_REFUSE", "CS_NEG_DONT_CARE", "CS_NEG_REQUIRE"]),
            "ssl_ca_certificate_file": _field("CA certificate file", "CA bundle that signed the server's certificate"),
            "ssl_verify_server": _field("Verify server", "hostname, cert or none", enum=["hostname", "cert", "none"]),
            "connection_timeout": {"label": "Connection timeout (s)", "description": "seconds",
                                   "schema": {"type": ["number", "null"], "minimum": 1}},
            "home_collection": _field("Home collection", "what the Test button checks; default /<zone>/home/<user>"),
            "session_factory": _field(
                "Session factory", "name of an installed microfair.irods_sessions entry point (e.g. standin); "
                "empty: a python-irodsclient session"),
        },
    },
    "dask": {
        "hook-class-name": f"{HOOKS}.dask.DaskHook",
        "hook-name": "Dask scheduler",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "login", "password"],
            "relabeling": {"host": "Scheduler host"},
            "placeholders": {"host": "dask-scheduler.facility.local", "port": "8786",
                             "extra": '{"protocol": "tcp"}'},
        },
        "conn-fields": {
            "protocol": _field("Protocol", "tcp (default), tls or ucx", enum=["tcp", "tls", "ucx"]),
        },
    },
    "restic": {
        "hook-class-name": f"{HOOKS}.restic.ResticHook",
        "hook-name": "restic repository",
        "ui-field-behaviour": {
            "hidden-fields": ["host", "schema", "login"],
            "relabeling": {"password": "Repository password", "port": "SSH port"},
            "placeholders": {"port": "22"},
        },
        "conn-fields": {
            "repository": _field("Repository", "what the Test button opens, e.g. sftp:backup@nas:/srv/restic; "
                                 "default: the backup target's repository in the facility file"),
            "key_file": _field("SSH key file", "private key for an sftp: repository"),
            "known_hosts": _field("SSH known_hosts file", "host keys for an sftp: repository"),
            "aws_access_key_id": _field("S3 access key id", "for an s3: repository"),
            "aws_secret_access_key": _secret("S3 secret access key", "for an s3: repository"),
        },
    },
    "biostudies": {
        "hook-class-name": f"{HOOKS}.biostudies.BiostudiesHook",
        "hook-name": "BioStudies submission API",
        "ui-field-behaviour": {
            "hidden-fields": [],
            "relabeling": {"host": "Submission API URL", "login": "BioStudies account (e-mail)",
                           "schema": "Scheme (for a bare host name)"},
            "placeholders": {"host": "https://www.ebi.ac.uk/biostudies/submissions/api",
                             "login": "facility@example.org", "schema": "https"},
        },
        "conn-fields": {
            "ftp_host": _field("FTP host", "for large files"),
            "ftp_port": {"label": "FTP port", "description": "21 by default",
                         "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535}},
            "ftp_user": _field("FTP user", "the FTP account for large files"),
            "ftp_password": _secret("FTP password", "the FTP account's password"),
        },
    },
    "datacite": {
        "hook-class-name": f"{HOOKS}.datacite.DataciteHook",
        "hook-name": "DataCite REST API",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"host": "API URL", "login": "Repository ID", "password": "Repository password"},
            "placeholders": {"host": "https://api.test.datacite.org", "login": "EMBL.FACILITY"},
        },
    },
    "elabftw": {
        "hook-class-name": f"{HOOKS}.elabftw.ElabftwHook",
        "hook-name": "eLabFTW (electronic lab notebook)",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "login", "extra"],
            "relabeling": {"host": "eLabFTW address", "password": "API key"},
            "placeholders": {"host": "https://eln.example.org"},
        },
    },
    "dataverse": {
        "hook-class-name": f"{HOOKS}.dataverse.DataverseHook",
        "hook-name": "Dataverse native API",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "login"],
            "relabeling": {"host": "Installation URL", "password": "API token"},
            "placeholders": {"host": "https://entrepot.recherche.data.gouv.fr",
                             "extra": '{"collection": "my-facility", "direct_upload": "auto"}'},
        },
        "conn-fields": {
            "collection": _field("Collection", "alias of the collection (dataverse) to deposit into"),
            "direct_upload": _field("Direct upload", "auto (ask the installation), true or false",
                                    enum=["auto", "true", "false"]),
            "max_files_per_request": {"label": "Files per request", "description": "1000 (Recherche Data Gouv)",
                                      "schema": {"type": ["integer", "null"], "minimum": 1}},
            "biomedical": _field("Biomedical block", "true to fill the biomedical metadata block",
                                 enum=["true", "false"]),
        },
    },
    "zenodo": {
        "hook-class-name": f"{HOOKS}.zenodo.ZenodoHook",
        "hook-name": "Zenodo deposition API",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port", "login"],
            "relabeling": {"host": "Zenodo URL", "password": "Personal access token"},
            "placeholders": {"host": "https://sandbox.zenodo.org"},
        },
        "conn-fields": {
            "community": _field("Community", "identifier of a community to submit the record to"),
            "max_files": {"label": "Files per record", "description": "100 on zenodo.org",
                          "schema": {"type": ["integer", "null"], "minimum": 1}},
            "max_bytes": {"label": "Bytes per record", "description": "50 GB on zenodo.org",
                          "schema": {"type": ["integer", "null"], "minimum": 1}},
        },
    },
}


def ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """The connection form of ``conn_type`` in the shape of ``BaseHook.get_ui_field_behaviour()``."""
    b = CONNECTION_TYPES[conn_type]["ui-field-behaviour"]
    return {"hidden_fields": list(b["hidden-fields"]), "relabeling": dict(b["relabeling"]),
            "placeholders": dict(b["placeholders"])}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads (``airflow/provider_info.schema.json``)."""
    return {
        "package-name": PACKAGE,
        "name": "microfair",
        "description": "Connection types of the microfair research-data pipeline of a light-microscopy facility: "
                       "iRODS, dask, restic, BioStudies and DataCite.",
        "versions": [_version()],
        "integrations": [{"integration-name": "microfair", "tags": ["software"]}],
        "hooks": [{"integration-name": "microfair",
                   "python-modules": sorted({c["hook-class-name"].rsplit(".", 1)[0]
                                             for c in CONNECTION_TYPES.values()})}],
        "connection-types": [{"connection-type": conn_type, **info} for conn_type, info in CONNECTION_TYPES.items()],
    }
