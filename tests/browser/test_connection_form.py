"""The iRODS connection type of microfair's Airflow provider, in Airflow's own UI and REST API.

The browser package's one real ``airflow api-server`` (tests/browser/conftest.py, shared with the dashboard's
test; ``[core] test_connection = Enabled``), Debian's Chromium: log in, open Admin > Connections, create an
iRODS connection in the form our provider declares (relabelled fields, the "Session factory" extra), press its
Test button and read Airflow's verdict; then a connection with a bad value and its failure. The same through ``POST /api/v2/connections/test``. The session factory
``standin`` is the package's recording iRODS stand-in; its zone lives in the file the shared stack names.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest

from airflow_stack import PASSWORDS, AirflowStack, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 30_000
#: The password typed into the form: no page, toast or API answer may show it.
FORM_PASSWORD = "irods-form-" + secrets.token_urlsafe(10)


@pytest.fixture(scope="module")
def page(browser, stack):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1100})
    ctx.set_default_timeout(TIMEOUT_MS)
    p = ctx.new_page()
    p.goto(stack.url + "/")
    p.wait_for_selector("input[name='username']")
    p.fill("input[name='username']", "admin")
    p.fill("input[name='password']", PASSWORDS["admin"])
    p.keyboard.press("Enter")
    p.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    yield p
    ctx.close()


def open_connections(page) -> None:
    """Admin > Connections, through Airflow's navigation."""
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    page.wait_for_url(re.compile(r"/connections$"))
    page.get_by_role("button", name=re.compile("Add Connection")).wait_for()


def add_irods_connection(page, conn_id: str, *, port: int, extras: dict[str, str]) -> None:
    """Fill the "Add Connection" form of type iRODS as a user would, and save it."""
    page.get_by_role("button", name=re.compile("Add Connection")).click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name='connection_id']").fill(conn_id)
    dialog.get_by_role("combobox", name="Connection Type").fill("iRODS")
    page.keyboard.press("Enter")
    # Our provider's form: "Zone" is the schema field, "iRODS user" the login, with their placeholders.
    assert dialog.get_by_placeholder("irods.facility.local").is_visible()
    dialog.get_by_label("Host").fill("127.0.0.1")
    dialog.get_by_label("iRODS user").fill("microfair")
    dialog.get_by_label("Password").fill(FORM_PASSWORD)
    dialog.get_by_label("Port").fill(str(port))
    dialog.get_by_label("Zone").fill("demoZone")
    dialog.get_by_text("Extra Fields", exact=True).click()
    for label, value in extras.items():  # the extra fields' labels are not tied to their inputs: find the field
        field = dialog.get_by_role("group").filter(has=page.locator("label", has_text=label))
        field.locator("input").first.fill(value)
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="detached")


def press_test(page, conn_id: str) -> tuple[str, str]:
    """Press the Test button of the connection's row; return the toast's title and message."""
    row = page.get_by_role("row").filter(has_text=conn_id)
    row.get_by_role("button", name="Test Connection").click()
    toast = page.locator("[data-scope='toast'][data-part='root']").filter(has_text=re.compile("Test Connection"))
    toast.last.wait_for()
    title = toast.last.locator("[data-part='title']").inner_text()
    message = toast.last.locator("[data-part='description']").inner_text()
    assert FORM_PASSWORD not in page.content()
    return title, message


def stored(stack: AirflowStack, conn_id: str) -> dict:
    r = stack.api("GET", f"/connections/{conn_id}")
    r.raise_for_status()
    assert FORM_PASSWORD not in r.text
    return r.json()


def test_an_irods_connection_made_in_the_form_tests_green_against_the_standin(page, stack):
    open_connections(page)
    add_irods_connection(page, "irods_form", port=1247, extras={"Session factory": "standin"})
    conn = stored(stack, "irods_form")
    assert (conn["conn_type"], conn["host"], conn["login"], conn["schema"]) == \
        ("irods", "127.0.0.1", "microfair", "demoZone")
    assert json.loads(conn["extra"])["session_factory"] == "standin"
    title, message = press_test(page, "irods_form")
    assert title == "Test Connection Successful"
    assert message == "connected to iRODS in zone demoZone as microfair; /demoZone/home/microfair exists"


def test_an_irods_connection_to_a_dead_port_tests_red_with_the_reason(page, stack):
    """No session factory: python-irodsclient itself, against a port where no iRODS listens."""
    dead = free_port()
    page.goto(stack.url + "/")
    open_connections(page)
    add_irods_connection(page, "irods_dead", port=dead, extras={"Connection timeout (s)": "5"})
    title, message = press_test(page, "irods_dead")
    assert title == "Test Connection Failed"
    assert f"Could not connect to specified host and port: 127.0.0.1:{dead}" in message


def test_the_rest_api_tests_an_irods_connection_and_never_echoes_the_password(stack):
    body = {"connection_id": "irods_rest", "conn_type": "irods", "host": "127.0.0.1", "port": 1247,
            "login": "microfair", "password": FORM_PASSWORD, "schema": "demoZone",
            "extra": json.dumps({"session_factory": "standin"})}
    cases = [
        ({}, True, "connected to iRODS in zone demoZone as microfair; /demoZone/home/microfair exists"),
        ({"extra": json.dumps({"session_factory": "standin", "home_collection": "/demoZone/home/nobody"})}, False,
         "the home collection /demoZone/home/nobody does not exist"),
        ({"extra": json.dumps({"session_factory": "stand-in"})}, False,
         "no iRODS session factory 'stand-in' is installed (entry-point group microfair.irods_sessions; "
         "installed: standin"),
    ]
    for change, status, message in cases:
        r = stack.api("POST", "/connections/test", json={**body, **change})
        assert r.status_code == 200, r.text
        assert r.json()["status"] is status and message in r.json()["message"], r.json()
        assert FORM_PASSWORD not in r.text
    r = stack.api("POST", "/connections/test", user="viewer", json=body)
    assert r.status_code == 403  # testing a connection needs the right to create one
