"""The BioStudies stand-in keeps every file operation inside the user's own folder (review Rv):
a path or ``fileName`` with ``..`` is refused, nothing outside is created or deleted."""

from __future__ import annotations

import requests

from microfair.standins.biostudies import BiostudiesStandin

USER, PW = "me@example.org", "pw-for-tests"


def _session(bs: BiostudiesStandin) -> dict[str, str]:
    token = requests.post(f"{bs.url}/auth/login", json={"login": USER, "password": PW}, timeout=10).json()["sessid"]
    return {"X-Session-Token": token}


def test_delete_with_dotdot_file_name_deletes_nothing_outside_the_user_folder(tmp_path):
    victim = tmp_path / "root" / "keep.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    with BiostudiesStandin(tmp_path / "root", users={USER: PW}) as bs:
        h = _session(bs)
        bs.user_dir(USER).joinpath("mine.txt").write_text("x")
        depth = len(bs.user_dir(USER).relative_to(tmp_path / "root").parts)
        r = requests.delete(f"{bs.url}/files/user", params={"fileName": "../" * depth + "keep.txt"},
                            headers=h, timeout=10)
        assert r.status_code == 403
        r = requests.delete(f"{bs.url}/files/user", params={"fileName": "../" * (depth + 1)}, headers=h, timeout=10)
        assert r.status_code == 403
        assert requests.delete(f"{bs.url}/files/user", params={"fileName": "mine.txt"}, headers=h,
                               timeout=10).status_code == 200
        assert bs.files(USER) == []
    assert victim.read_text() == "precious"


def test_folder_with_dotdot_is_refused_and_creates_nothing_outside(tmp_path):
    with BiostudiesStandin(tmp_path / "root", users={USER: PW}) as bs:
        h = _session(bs)
        r = requests.post(f"{bs.url}/folder/user", params={"folder": "../../../../escaped"}, headers=h, timeout=10)
        assert r.status_code == 403
        assert requests.post(f"{bs.url}/folder/user", params={"folder": "inside"}, headers=h,
                             timeout=10).status_code == 200
        assert bs.user_dir(USER).joinpath("inside").is_dir()
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))


def test_a_sibling_folder_sharing_the_name_prefix_is_not_inside(tmp_path):
    with BiostudiesStandin(tmp_path / "root", users={USER: PW}) as bs:
        h = _session(bs)
        home = bs.user_dir(USER)
        sibling = home.with_name(home.name + "0")
        sibling.mkdir()
        (sibling / "other.txt").write_text("not yours")
        r = requests.get(f"{bs.url}/files/user/%2E%2E/{sibling.name}", headers=h, timeout=10)
        assert r.status_code == 403
