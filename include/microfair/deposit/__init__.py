"""BioImage Archive deposit (BioStudies PageTab, ``BioImages.v5``) and DataCite metadata.

Public API::

    from microfair.deposit import (DepositSelection, load_study, plan_deposit, validate_plan,
                                   BiostudiesClient, DataciteClient, datacite_payload)
    from microfair.deposit.run import validate_deposit, upload_deposit, submit_deposit, record_deposit, datacite_export
"""

from microfair.deposit.biostudies import (
    AuthenticationError,
    BiostudiesClient,
    BiostudiesError,
    FtpAccess,
    SubmissionRejected,
)
from microfair.deposit.builder import DepositPlan, DepositSelection, build_pagetab, plan_deposit
from microfair.deposit.datacite import DataciteClient, DataciteError, datacite_payload
from microfair.deposit.pagetab import Submission
from microfair.deposit.problems import DepositInvalid, Problem
from microfair.deposit.study import StudyFileError, StudyMetadata, load_study, parse_study
from microfair.deposit.validate import validate_plan, validate_study

__all__ = [
    "AuthenticationError", "BiostudiesClient", "BiostudiesError", "DataciteClient", "DataciteError",
    "DepositInvalid", "DepositPlan", "DepositSelection", "FtpAccess", "Problem", "StudyFileError",
    "StudyMetadata", "Submission", "SubmissionRejected", "build_pagetab", "datacite_payload", "load_study",
    "parse_study", "plan_deposit", "validate_plan", "validate_study",
]
