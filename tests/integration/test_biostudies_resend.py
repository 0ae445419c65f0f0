"""BioStudies user-folder uploads: a file whose content changed but whose size did not is sent again."""

from __future__ import annotations

import hashlib
import json

import pytest

from microfair.deposit.biostudies import BiostudiesClient
from microfair.standins.biostudies import BiostudiesStandin

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "depositor@example.org", "S3cret-pass-never-logged"


def test_a_file_list_with_new_checksums_but_the_same_size_is_sent_again(tmp_path):
    entries = [{"path": "a.tif", "attributes": [{"name": "sha256", "value": "a" * 64}]}]
    local = tmp_path / "file_list_1_x.json"
    local.write_text(json.dumps(entries))
    remote = "S-DEMO/study/file_list_1_x.json"
    with BiostudiesStandin(tmp_path / "bs", {LOGIN: PASSWORD}) as bs:
        client = BiostudiesClient(bs.url, LOGIN, PASSWORD, retries=0)
        first = client.upload_files([(local, remote, "file-list")])
        assert first.uploaded == [remote]
        again = client.upload_files([(local, remote, "file-list")])
        assert again.uploaded == [] and again.skipped == [remote]  # same content: not sent twice
        before = local.stat().st_size
        entries[0]["attributes"][0]["value"] = "b" * 64  # a raw file changed: same-length checksum
        local.write_text(json.dumps(entries))
        assert local.stat().st_size == before
        third = client.upload_files([(local, remote, "file-list")])
        assert third.uploaded == [remote]
        assert bs.sha256(LOGIN, remote) == hashlib.sha256(local.read_bytes()).hexdigest()
