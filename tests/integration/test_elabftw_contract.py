"""The eLabFTW behaviour microfair relies on: against the local stand-in always, against a real instance
when ``MICROFAIR_ELABFTW_TEST_URL``, ``MICROFAIR_ELABFTW_TEST_KEY`` and ``MICROFAIR_ELABFTW_TEST_ENTRY``
(``experiments/42``) are set (it writes one comment on that entry)."""

import os

import pytest

from microfair.eln.contract import check_elabftw_behaviour
from microfair.standins.elabftw import ElabftwStandin

KEY = "5-" + "c3" * 20


def test_the_standin_behaves_as_microfair_expects():
    with ElabftwStandin({KEY: "write"}, {("experiments", 42): "test entry"}) as eln:
        done = check_elabftw_behaviour(eln.url, KEY, "experiments", 42)
    assert len(done) == 6


def test_the_checks_can_fail_on_a_server_that_lists_a_comment_twice(monkeypatch):
    with ElabftwStandin({KEY: "write"}, {("experiments", 42): "test entry"}) as eln:
        real_list = eln.comments.get
        monkeypatch.setattr(eln, "comments", type("Twice", (dict,), {
            "get": lambda self, k, d=None: (real_list(k, d) or []) * 2})(eln.comments))
        with pytest.raises(AssertionError, match="listed as"):
            check_elabftw_behaviour(eln.url, KEY, "experiments", 42)


@pytest.mark.skipif(not os.environ.get("MICROFAIR_ELABFTW_TEST_URL"), reason="no real eLabFTW configured")
def test_a_real_elabftw_behaves_as_microfair_expects():
    etype, eid = os.environ["MICROFAIR_ELABFTW_TEST_ENTRY"].split("/")
    done = check_elabftw_behaviour(os.environ["MICROFAIR_ELABFTW_TEST_URL"], os.environ["MICROFAIR_ELABFTW_TEST_KEY"],
                                   etype, int(eid))
    assert len(done) == 6


def test_the_checks_still_fail_under_python_dash_o():
    """``python -O`` strips ``assert`` statements: the contract must not rely on them (review Rv)."""
    import subprocess
    import sys

    script = (
        "from microfair.eln.contract import check_elabftw_behaviour\n"
        "from microfair.standins.elabftw import ElabftwStandin\n"
        f"with ElabftwStandin({{{KEY!r}: 'write'}}, {{('experiments', 42): 't'}}, version='') as eln:\n"
        "    try:\n"
        f"        check_elabftw_behaviour(eln.url, {KEY!r}, 'experiments', 42)\n"
        "    except AssertionError as exc:\n"
        "        print('refused:', exc)\n"
        "    else:\n"
        "        print('accepted')\n")
    out = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused:") and "elabftw_version" in out.stdout
