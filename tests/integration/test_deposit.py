"""BioImage Archive deposit against a local BioStudies (HTTP + pyftpdlib FTP) and DataCite: every bad input."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
import yaml

from microfair.deposit import (
    AuthenticationError,
    BiostudiesClient,
    DataciteClient,
    DataciteError,
    DepositInvalid,
    DepositSelection,
    FtpAccess,
    SubmissionRejected,
)
from microfair.deposit.run import (
    FileChangedError,
    build,
    datacite_export,
    record_deposit,
    record_rejection,
    submit_deposit,
    upload_deposit,
    validate_deposit,
)
from microfair.standins.biostudies import BiostudiesStandin
from microfair.standins.datacite import DataciteStandin
from tests.support.synthetic_ingest import ingest_synthetic

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "depositor@example.org", "S3cret-pass-never-logged"
EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
SEL = DepositSelection(project="DEMO")


class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


@pytest.fixture
def bs(tmp_path):
    with BiostudiesStandin(tmp_path / "biostudies", {LOGIN: PASSWORD}) as standin:
        yield standin


@pytest.fixture
def uids(facility_config, ledger):
    return ingest_synthetic(facility_config, ledger, n=3)


@pytest.fixture
def study_file(tmp_path) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(EXAMPLE.read_text())
    return p


def client(bs, *, password=PASSWORD, threshold=10**9, retries=4, sleeps=None) -> BiostudiesClient:
    return BiostudiesClient(bs.url, LOGIN, password,
                            ftp=FtpAccess("127.0.0.1", bs.ftp_port, bs.ftp_user, bs.ftp_password),
                            ftp_threshold_bytes=threshold, retries=retries, backoff_seconds=1.0,
                            sleep=sleeps if sleeps is not None else Sleeps())


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_deposit_end_to_end_records_accession_doi_and_datacite_draft(facility_config, ledger, uids, bs, study_file,
                                                                      caplog):
    caplog.set_level(logging.DEBUG)
    plan = validate_deposit(facility_config, ledger, study_file, SEL)
    c = client(bs, threshold=min(f.local.stat().st_size for f in plan.files()) - 1)  # all raw files by FTP
    report = upload_deposit(facility_config, ledger, plan, c)
    assert len(plan.files()) == 2 * len(uids)  # each raw file and its RO-Crate (microfair.provenance)
    assert len(report.uploaded) == len(plan.files()) + 1 and report.skipped == []  # + the file list
    for f in plan.files():
        crate = f.remote.endswith(".ro-crate-metadata.json")
        assert bs.sha256(LOGIN, f"{plan.root_path}/{f.remote}") == (f.sha256 if crate else ledger.require(f.uid).sha256)
    ref = submit_deposit(facility_config, ledger, plan, c)
    assert ref.accno.startswith("S-BIAD") and ref.version == 1
    assert c.wait(ref.accno, ref.version, poll_seconds=0) == "POST_PROCESSED"
    body = record_deposit(facility_config, ledger, plan, ref, c)
    assert body["doi"] == f"10.6019/{ref.accno}"
    for uid in uids:
        rec = ledger.get_record(uid, "bia")
        assert rec["accession"] == ref.accno and rec["doi"] == body["doi"] and rec["status"] == "POST_PROCESSED"
        steps = [e.details["step"] for e in ledger.events(uid, "deposit")]
        assert steps == ["validate", "upload", "submit", "record"]
        assert ledger.stage_states(uid)["deposit"].state == "succeeded"
    assert [a.action for a in ledger.audit_entries("deposited")] == ["deposited"]
    stored = bs.submissions[ref.accno]
    assert stored["section"]["type"] == "Study"
    assert (staging := Path(facility_config.storage.reports) / "deposits" / SEL.label() / "pagetab.tsv").is_file()
    assert staging.read_text().startswith("Submission")

    facility_config.datacite.prefix = "10.80000"
    with DataciteStandin("EBI.TEST", "dc-secret-pass") as dc:
        out = datacite_export(facility_config, ledger, plan, DataciteClient(dc.url, "EBI.TEST", "dc-secret-pass"))
        assert out["doi"].startswith("10.80000/") and dc.dois[out["doi"]]["state"] == "draft"
        assert dc.dois[out["doi"]]["titles"][0]["title"] == plan.study.title
        again = datacite_export(facility_config, ledger, plan, DataciteClient(dc.url, "EBI.TEST", "dc-secret-pass"))
        assert again["doi"] == out["doi"] and len(dc.dois) == 1  # re-run updates, never a second DOI
    assert ledger.get_record(uids[0], "datacite")["doi"] == out["doi"]

    # a second deposit run skips what is there and updates the same accession
    plan2 = validate_deposit(facility_config, ledger, study_file, SEL)
    assert plan2.accession == ref.accno
    r2 = upload_deposit(facility_config, ledger, plan2, c)
    # the raw files are there; the crates now hold the accession and DOI, so they go again
    crates = [f"{plan2.root_path}/{f.remote}" for f in plan2.files() if f.remote.endswith(".ro-crate-metadata.json")]
    assert set(crates) <= set(r2.uploaded) and len(crates) == len(uids)
    assert {f"{plan2.root_path}/{f.remote}" for f in plan2.files()} - set(crates) <= set(r2.skipped)
    assert submit_deposit(facility_config, ledger, plan2, c) == type(ref)(ref.accno, 2)
    assert PASSWORD not in caplog.text and c._token not in caplog.text and "dc-secret-pass" not in caplog.text


def test_missing_rembi_fields_are_all_listed_and_nothing_is_uploaded(facility_config, ledger, uids, bs, tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    del data["biosamples"][0]["organism"], data["specimens"][0]["sample_preparation"], data["image_acquisitions"]
    data["authors"][0].pop("email")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(DepositInvalid) as info:
        validate_deposit(facility_config, ledger, bad, SEL)
    paths = {p.path for p in info.value.problems}
    assert {"biosamples[0].organism.scientific_name", "specimens[0].sample_preparation",
            "authors[0].email"} <= paths
    assert any(p.endswith(".imaging_method") for p in paths) and any(p.endswith(".imaging_instrument") for p in paths)
    assert bs.files(LOGIN) == [] and bs.log == []  # not a single request reached BioStudies
    for uid in uids:
        ev = ledger.events(uid, "deposit")[-1]
        assert ev.state == "failed" and "specimens[0].sample_preparation" in ev.error
        assert ev.details["step"] == "validate" and len(ev.details["problems"]) == len(paths)
    assert ledger.audit_entries("deposit_invalid")


def test_wrong_credentials_fail_clearly_without_the_secret_in_logs(facility_config, ledger, uids, bs, study_file,
                                                                   caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pass-should-not-leak"
    plan = validate_deposit(facility_config, ledger, study_file, SEL)
    c = client(bs, password=wrong)
    with pytest.raises(AuthenticationError) as info:
        upload_deposit(facility_config, ledger, plan, c)
    assert LOGIN in str(info.value) and "password" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text and wrong not in repr(c)
    ev = ledger.events(uids[0], "deposit")[-1]
    assert ev.state == "failed" and "AuthenticationError" in ev.error and wrong not in ev.error
    assert bs.files(LOGIN) == []
    # a bad session token is a 401 from the server, and the client logs in again once
    good = client(bs)
    good.login()
    bs.tokens.clear()
    assert good.list_files("") == []
    with pytest.raises(DataciteError) as dinfo:
        with DataciteStandin("EBI.TEST", "right") as dc:
            DataciteClient(dc.url, "EBI.TEST", "dc-wrong-pass").create_draft({"data": {"attributes": {}}})
    assert "EBI.TEST" in str(dinfo.value) and "dc-wrong-pass" not in str(dinfo.value) + caplog.text


def test_5xx_and_connection_resets_are_retried_with_backoff_and_the_upload_resumes(facility_config, ledger, bs,
                                                                                   study_file):
    ingest_synthetic(facility_config, ledger, n=3, shape=(2, 2, 320, 320))  # ~0.8 MB each
    plan = validate_deposit(facility_config, ledger, study_file, SEL)
    files = plan.files()
    big = max(files[1:], key=lambda f: f.local.stat().st_size)  # files[0] is sent by the first run
    sleeps = Sleeps()
    # 1. an earlier run died for good (no retries) while sending the second file: nothing is lost
    c0 = client(bs, retries=0)
    bs.fail_next(f"/files/user/{plan.root_path}/", 1, "reset", method="POST", after=1)
    with pytest.raises(Exception):
        upload_deposit(facility_config, ledger, plan, c0)
    assert len(bs.files(LOGIN)) == 1
    # 2. the next run: 5xx twice, a reset mid-body and an FTP transfer broken half-way, all retried
    c = client(bs, threshold=100_000, sleeps=sleeps)  # raw files by FTP, the file list by HTTP
    bs.fail_next("/files/user", 2, "503")
    bs.fail_next("/files/user", 1, "reset", method="POST")
    bs.ftp_drop_after(big.local.stat().st_size // 2, 1)
    report = upload_deposit(facility_config, ledger, plan, c)
    assert report.retries == 4 and sleeps[:2] == [1.0, 2.0] and len(sleeps) == 4
    assert len(report.skipped) == 1  # the file the first run had sent
    assert len(report.resumed) == 1  # FTP REST from the partial file
    assert report.resumed[0] in {f"{plan.root_path}/{f.remote}" for f in files[1:]}
    for f in files:
        assert bs.sha256(LOGIN, f"{plan.root_path}/{f.remote}") == _sha(f.local)
    assert any(code == 0 for _, _, code in bs.log) and any(code == 503 for _, _, code in bs.log)
    # 3. a third run has nothing left to send
    again = upload_deposit(facility_config, ledger, plan, client(bs))
    assert again.uploaded == [] and len(again.skipped) == len(files) + 1


def test_backoff_doubles(bs):
    sleeps = Sleeps()
    c = client(bs, retries=3, sleeps=sleeps)
    bs.fail_next("/auth/login", 3, "500")
    c.login()
    assert sleeps == [1.0, 2.0, 4.0]
    bs.fail_next("/files/user", 4, "500")
    with pytest.raises(Exception, match="HTTP 500"):
        c.list_files("")


def test_invalid_submission_errors_reach_the_log_and_the_ledger(facility_config, ledger, uids, bs, study_file,
                                                                caplog):
    plan = validate_deposit(facility_config, ledger, study_file, SEL)
    c = client(bs)
    upload_deposit(facility_config, ledger, plan, c)
    missing = plan.files()[0]
    (bs.user_dir(LOGIN) / plan.root_path / missing.remote).unlink()  # the server will not find it
    ref = submit_deposit(facility_config, ledger, plan, c)
    with pytest.raises(SubmissionRejected) as info:
        c.wait(ref.accno, ref.version, poll_seconds=0)
    assert any(missing.remote in m for m in info.value.messages)
    caplog.set_level(logging.ERROR)
    record_rejection(ledger, plan, ref.accno, ref.version, info.value.messages)
    assert missing.remote in caplog.text
    for uid in plan.uids():
        assert ledger.get_record(uid, "bia")["status"] == "INVALID"
        assert missing.remote in ledger.get_record(uid, "bia")["errors"][0]
        ev = ledger.events(uid, "deposit")[-1]
        assert ev.state == "failed" and missing.remote in ev.error
    # a PageTab the server cannot parse: 400 with the FAIL tree, its messages surfaced
    with pytest.raises(SubmissionRejected) as info:
        c.submit_async({"attributes": []})
    assert "Submission must have a root section" in info.value.messages


def test_a_file_changed_after_upload_is_detected_by_its_checksum(facility_config, ledger, uids, bs, study_file):
    plan = validate_deposit(facility_config, ledger, study_file, SEL)
    c = client(bs)
    upload_deposit(facility_config, ledger, plan, c)
    victim = plan.files()[1]
    os.chmod(victim.local, 0o644)
    data = bytearray(victim.local.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    victim.local.write_bytes(bytes(data))
    with pytest.raises(FileChangedError) as info:
        submit_deposit(facility_config, ledger, plan, c)
    assert info.value.changed[0][:2] == (victim.uid, victim.remote)
    assert bs.requests == {}  # nothing was submitted
    ev = ledger.events(victim.uid, "deposit")[-1]
    assert ev.state == "failed" and ev.details["step"] == "submit" and victim.remote in ev.error
    assert bs.sha256(LOGIN, f"{plan.root_path}/{victim.remote}") != _sha(victim.local)
    # and the upload refuses to publish a raw copy that no longer matches the ledger
    with pytest.raises(RuntimeError, match="ledger checksum"):
        upload_deposit(facility_config, ledger, plan, c)


def test_build_is_deterministic_and_side_effect_free(facility_config, ledger, uids, study_file, bs):
    a, pa = build(facility_config, ledger, study_file, SEL)
    b, pb = build(facility_config, ledger, study_file, SEL)
    assert pa == pb == [] and a.pagetab().to_json() == b.pagetab().to_json()
    assert ledger.events(uids[0], "deposit") == [] and bs.log == []
