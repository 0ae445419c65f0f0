"""Shared behaviour checks of the Dataverse and Zenodo targets: each stand-in, and a real installation when
``MICROFAIR_DATAVERSE_TEST_URL`` / ``MICROFAIR_ZENODO_TEST_URL`` and a token are set (tests/support/repositories.py).

Every bad input of issue 15: a missing or wrong token (no secret in any log), an unknown collection, a
licence refused, a file over the limit, 5xx and resets mid-upload (retried, resumed), a checksum mismatch
after upload, a re-run after success (a no-op naming the identifier), a study file missing citation fields.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from microfair.deposit import DepositInvalid, DepositSelection
from microfair.deposit.targets import (
    ChecksumMismatch,
    CollectionNotFound,
    Draft,
    LicenceRefused,
    LimitExceeded,
    Publication,
    RepositoryAuthError,
    TransientError,
)
from microfair.deposit.targets.run import RECORD, build_repository, deposit
from microfair.deposit.targets.unchanged import is_crate_name
from tests.support.repositories import open_repo, repo_kinds
from tests.support.synthetic_ingest import synthetic_facility

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
SEL = DepositSelection(project="DEMO")


@pytest.fixture(scope="module")
def facility(tmp_path_factory):
    """One ingested facility (3 datasets) for the module; each test starts with no publication recorded."""
    return synthetic_facility(tmp_path_factory.mktemp("facility"), n=3)


@pytest.fixture
def fac(facility):
    cfg, ledger, uids = facility
    for uid in uids:
        ledger.put_record(uid, RECORD, {})
    return facility


@pytest.fixture(params=repo_kinds())
def repo(request):
    with open_repo(request.param) as r:
        yield r


def needs_standin(repo):
    if repo.live:
        pytest.skip("fault injection needs the stand-in")


def study(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_publish_records_pid_and_a_rerun_is_a_no_op(fac, repo, tmp_path, caplog):
    cfg, ledger, uids = fac
    caplog.set_level(logging.DEBUG)
    target = repo.target()
    _plan, items, _ = build_repository(cfg, ledger, study(tmp_path), SEL, target)  # as sent (crates refresh after)
    out = deposit(cfg, ledger, study(tmp_path), SEL, target)
    pub = out.publication
    assert out.action == "published" and pub.state == "published" and pub.pid and pub.landing_page
    assert len(out.upload.uploaded) == len(items) >= 3 * 2  # raw file + reports of each dataset
    remote = repo.remote_checksums(pub)
    assert remote == {repo.remote_name(i): i.md5 for i in items}  # every file there, byte for byte
    for uid in uids:
        rec = ledger.get_record(uid, RECORD)[repo.kind]
        assert rec["pid"] == pub.pid and rec["landing_page"] == pub.landing_page and rec["state"] == "published"
        assert rec["files"][items[0].name]["sha256"] == items[0].sha256
        assert rec["request"]["study_file"].endswith("study.yaml")
    assert ledger.audit_entries("published")
    before = list(repo.standin.log) if repo.standin else None
    again = deposit(cfg, ledger, study(tmp_path), SEL, repo.target())
    assert again.action == "unchanged" and again.publication.pid == pub.pid
    assert f"already published in {repo.kind} as {pub.pid}" in caplog.text
    if repo.standin:
        new = repo.standin.log[len(before):]
        assert [m for m, _p, _c in new] == ["GET"]  # one look that the record still exists, nothing written
        assert repo.published_count() == 1
    assert repo.token not in caplog.text


def test_a_draft_waits_for_a_person_then_publishes_without_sending_again(fac, repo, tmp_path):
    cfg, ledger, uids = fac
    out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target(), publish=False)
    assert out.action == "draft" and out.publication.state == "draft"
    assert ledger.get_record(uids[0], RECORD)[repo.kind]["state"] == "draft"
    if repo.standin:
        assert repo.published_count() == 0
    done = deposit(cfg, ledger, study(tmp_path), SEL, repo.target(), publish=True)
    assert done.action == "published" and done.publication.id == out.publication.id
    assert done.upload.uploaded == [] and len(done.upload.skipped) == len(out.upload.uploaded)


@pytest.mark.parametrize("token", ["", "wrong-token-5f1e-should-not-leak"])
def test_a_missing_or_wrong_token_fails_clearly_without_the_secret_in_logs(fac, repo, tmp_path, caplog, token):
    cfg, ledger, uids = fac
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RepositoryAuthError) as info:
        deposit(cfg, ledger, study(tmp_path), SEL, repo.target(token=token))
    assert "HTTP 401" in str(info.value) and "token" in str(info.value)
    ev = ledger.events(uids[0], "deposit")[-1]
    assert ev.state == "failed" and "RepositoryAuthError" in ev.error and ev.details["step"] == f"{repo.kind}:preflight"
    assert not (ledger.get_record(uids[0], RECORD) or {}).get(repo.kind)  # no draft recorded, none created
    if token:
        assert token not in caplog.text and token not in str(info.value) and token not in ev.error
        assert token not in repr(repo.target(token=token))
    if repo.standin:
        assert repo.published_count() == 0 and not getattr(repo.standin, "datasets", None) \
            and not getattr(repo.standin, "depositions", None)


def test_a_token_without_permission_is_refused_with_403(fac, repo, tmp_path):
    needs_standin(repo)
    cfg, ledger, _ = fac
    other = "dv-token-other-user" if repo.kind == "dataverse" else "zenodo-read-only"
    with pytest.raises(RepositoryAuthError, match="HTTP 403"):
        deposit(cfg, ledger, study(tmp_path), SEL, repo.target(token=other))


def test_an_unknown_collection_is_named_and_nothing_is_created(fac, repo, tmp_path):
    cfg, ledger, uids = fac
    kw = {"collection": "no-such-collection-42"} if repo.kind == "dataverse" else {"community": "no-such-community-42"}
    with pytest.raises(CollectionNotFound, match="no-such-co"):
        deposit(cfg, ledger, study(tmp_path), SEL, repo.target(**kw))
    assert not (ledger.get_record(uids[0], RECORD) or {}).get(repo.kind)
    if repo.standin:
        assert not getattr(repo.standin, "datasets", {}) and not getattr(repo.standin, "depositions", {})


def test_a_licence_the_installation_refuses_fails_before_anything_is_created(fac, repo, tmp_path):
    needs_standin(repo)
    cfg, ledger, _ = fac
    if repo.kind == "dataverse":
        repo.standin.licences = [("CC0 1.0", "http://creativecommons.org/publicdomain/zero/1.0")]
    else:
        import microfair.standins.zenodo as zs

        zs_licences = zs.LICENCES
        zs.LICENCES = ("cc0-1.0",)
    try:
        with pytest.raises(LicenceRefused, match="(?i)licen"):
            deposit(cfg, ledger, study(tmp_path), SEL, repo.target())
    finally:
        if repo.kind == "zenodo":
            zs.LICENCES = zs_licences
    assert not getattr(repo.standin, "datasets", {}) and not getattr(repo.standin, "depositions", {})


def test_a_file_over_the_limit_is_refused_before_anything_is_uploaded(fac, repo, tmp_path):
    cfg, ledger, _ = fac
    if repo.kind == "dataverse":
        needs_standin(repo)
        repo.standin.max_file_bytes = 10_000  # the raw files are 26 kB
        target = repo.target()
    else:
        target = repo.target(max_bytes=10_000)
    with pytest.raises(LimitExceeded) as info:
        deposit(cfg, ledger, study(tmp_path), SEL, target)
    assert "nothing was uploaded" in str(info.value) and ".ome.tiff" in str(info.value)
    if repo.standin:
        assert not getattr(repo.standin, "datasets", {}) and not getattr(repo.standin, "depositions", {})
    if repo.kind == "zenodo":
        with pytest.raises(LimitExceeded, match="at most 2"):
            deposit(cfg, ledger, study(tmp_path), SEL, repo.target(max_files=2))


def _upload_prefix(repo) -> str:
    return "/api/v1/datasets/:persistentId/add" if repo.kind == "dataverse" else "/api/files/"


def test_5xx_and_a_reset_mid_upload_are_retried_and_an_interrupted_run_resumes(fac, repo, tmp_path):
    needs_standin(repo)
    cfg, ledger, uids = fac
    s = repo.standin
    # 1. a run dies for good (no retries) on the third file: its draft is recorded, nothing published
    s.fail_next(_upload_prefix(repo), 1, "reset", after=2)
    with pytest.raises(Exception):
        deposit(cfg, ledger, study(tmp_path), SEL, repo.target(retries=0))
    rec = ledger.get_record(uids[0], RECORD)[repo.kind]
    assert rec["state"] == "draft" and repo.published_count() == 0
    # 2. the next run: two 503s and a reset half-way through a body, retried with back-off; resumes the draft
    s.fail_next(_upload_prefix(repo), 2, "503")
    s.fail_next(_upload_prefix(repo), 1, "reset")
    _plan, items, _ = build_repository(cfg, ledger, study(tmp_path), SEL, repo.target())  # before the crate refresh
    out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target())
    assert out.action == "published" and out.publication.id == rec["id"]  # the same draft, not a second one
    assert out.upload.retries == 3 and repo.sleeps[:2] == [1.0, 2.0]
    assert len(out.upload.skipped) == 2  # what the first run had sent
    assert any(code == 0 for _m, _p, code in s.log) and any(code == 503 for _m, _p, code in s.log)
    assert repo.remote_checksums(out.publication) == {repo.remote_name(i): i.md5 for i in items}
    assert repo.published_count() == 1


def test_a_checksum_mismatch_after_upload_removes_the_copy_and_publishes_nothing(fac, repo, tmp_path):
    needs_standin(repo)
    cfg, ledger, uids = fac
    repo.standin.corrupt_next(1)
    with pytest.raises(ChecksumMismatch) as info:
        deposit(cfg, ledger, study(tmp_path), SEL, repo.target())
    assert "arrived damaged" in str(info.value) and "nothing was published" in str(info.value)
    assert repo.published_count() == 0
    ev = ledger.events(uids[0], "deposit")[-1]
    assert ev.state == "failed" and ev.details["step"] == f"{repo.kind}:upload"
    draft = ledger.get_record(uids[0], RECORD)[repo.kind]
    assert draft["state"] == "draft"
    assert len(repo.remote_checksums(Publication.from_dict(draft))) == 0  # the bad copy was removed
    out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target())  # the re-run sends it again
    assert out.action == "published" and repo.published_count() == 1


def test_a_study_file_missing_citation_fields_lists_every_one_and_sends_nothing(fac, repo, tmp_path):
    cfg, ledger, uids = fac
    data = yaml.safe_load(EXAMPLE.read_text())
    for k in ("title", "description", "license", "subject"):
        data.pop(k)
    data["authors"][0].pop("name")
    data["authors"][0].pop("email")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(DepositInvalid) as info:
        deposit(cfg, ledger, bad, SEL, repo.target())
    paths = {p.path for p in info.value.problems}
    expected = {"title", "description", "license", "authors[0].name"}
    if repo.kind == "dataverse":
        expected |= {"subject", "authors[0].email"}
    assert expected <= paths, paths
    assert ("Dataverse" if repo.kind == "dataverse" else "Zenodo") in str(info.value)
    if repo.standin:
        assert repo.standin.log == []  # not one request
    ev = ledger.events(uids[0], "deposit")[-1]
    assert ev.state == "failed" and len(ev.details["problems"]) == len(info.value.problems)


def test_changed_files_after_publication_make_a_new_version(fac, repo, tmp_path):
    cfg, ledger, uids = fac
    first = deposit(cfg, ledger, study(tmp_path), SEL, repo.target()).publication
    _plan, items, _ = build_repository(cfg, ledger, study(tmp_path), SEL, repo.target())
    report = next(i for i in items if i.kind == "report")
    original = report.local.read_bytes()
    report.local.write_bytes(original + b"\n")
    try:
        out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target())
    finally:
        report.local.write_bytes(original)
    assert out.action == "published" and [n for n in out.upload.uploaded if not is_crate_name(n)] == [report.name]
    assert [n for n in out.upload.uploaded if is_crate_name(n)]  # the crates, refreshed after the first publish
    if repo.kind == "zenodo":
        assert out.publication.id != first.id and out.publication.pid != first.pid  # a new version, a new DOI
        assert repo.remote_checksums(first)[repo.remote_name(report)] == report.md5  # the old record is frozen
    else:
        assert out.publication.pid == first.pid and out.publication.version == first.version + 1
    if repo.standin:
        assert repo.published_count() == (2 if repo.kind == "zenodo" else 1)


def test_dataverse_direct_upload_registers_files_in_batches(fac, tmp_path):
    cfg, ledger, _ = fac
    with open_repo("dataverse") as repo:
        repo.standin.direct_upload = True
        repo.standin.max_files_per_request = 4  # the installation's limit (RDG: 1,000), set on the connection
        _plan, items, _ = build_repository(cfg, ledger, study(tmp_path), SEL, repo.target())  # as sent
        out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target(max_files_per_request=4))
        n = len(out.upload.uploaded)
        assert n > 4 and repo.standin.requests_to("/api/v1/datasets/:persistentId/addFiles") == -(-n // 4)
        assert repo.standin.requests_to("/api/v1/datasets/:persistentId/add") == repo.standin.requests_to(
            "/api/v1/datasets/:persistentId/addFiles")  # no multipart upload at all
        assert repo.standin.requests_to("/s3/", "PUT") == n
        assert repo.remote_checksums(out.publication) == {i.name: i.md5 for i in items}


def test_the_ome_zarr_goes_as_one_archive_only_when_asked(fac, tmp_path):
    import zipfile

    cfg, ledger, uids = fac
    zarr = tmp_path / "img.ome.zarr"
    for rel in ("zarr.json", "0/zarr.json", "0/c/0/0/0", "0/c/0/0/1"):
        (zarr / rel).parent.mkdir(parents=True, exist_ok=True)
        (zarr / rel).write_bytes(rel.encode() * 10)
    ledger.update(uids[0], zarr_path=str(zarr))
    try:
        with open_repo("dataverse") as repo:
            _plan, plain, _ = build_repository(cfg, ledger, study(tmp_path), SEL, repo.target())
            assert not [i for i in plain if i.kind == "zarr-archive"]
            _plan, items, _ = build_repository(cfg, ledger, study(tmp_path), SEL, repo.target(), include_zarr=True)
            out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target(), include_zarr=True)
            archives = [i for i in items if i.kind == "zarr-archive"]
            assert len(archives) == 1 and archives[0].name.endswith("/img.ome.zarr.zip")
            with zipfile.ZipFile(archives[0].local) as zf:
                assert sorted(zf.namelist()) == sorted(f"img.ome.zarr/{r}" for r in
                                                       ("zarr.json", "0/zarr.json", "0/c/0/0/0", "0/c/0/0/1"))
                assert zf.read("img.ome.zarr/0/c/0/0/1") == b"0/c/0/0/1" * 10
            assert archives[0].name in out.upload.uploaded
            assert repo.standin.file_bytes(out.publication.pid, archives[0].name) == archives[0].local.read_bytes()
            again = deposit(cfg, ledger, study(tmp_path), SEL, repo.target(), include_zarr=True)
            assert again.action == "unchanged"  # the archive is rebuilt byte for byte (or reused)
    finally:
        ledger.update(uids[0], zarr_path=None)


def test_dataverse_publication_workflow_answering_202_is_waited_for(fac, tmp_path):
    cfg, ledger, _ = fac
    with open_repo("dataverse") as repo:
        repo.standin.publish_workflow_polls = 3
        out = deposit(cfg, ledger, study(tmp_path), SEL, repo.target())
        assert out.publication.state == "published" and out.publication.pid in repo.standin.published()
        assert any(code == 202 for _m, _p, code in repo.standin.log) and len(repo.sleeps) >= 2
        repo.standin.publish_workflow_polls = 10**6  # a workflow that never ends in time: a retry resumes
        ledger_pid = out.publication.pid
        ds = repo.standin.dataset(ledger_pid)
        ds.draft()  # an edit opened a draft the next run must publish
        t = repo.target()
        t.publish_polls = 2
        with pytest.raises(TransientError, match="still not released"):
            t.publish(Draft(str(ds.id), ledger_pid, None))
