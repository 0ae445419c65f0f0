"""Links from datasets to electronic lab notebook entries (eLabFTW, LabGuru, any URL), guide §3.2.3.

* :mod:`microfair.eln.links`: the ``eln`` value of a sidecar or a project default, parsed into an
  :class:`ElnRef` (an eLabFTW entry is recognised by its address or given as ``elabftw:<id>``);
* :mod:`microfair.eln.elabftw`: a small client for eLabFTW's REST API v2 (read an entry, comment on it);
* :mod:`microfair.eln.notify`: the ledger record ``eln`` and the post-backs ("ingested", "deposited"),
  which never fail a stage: an unreachable ELN or a refused key leaves the post *pending*, retried later.
"""

from microfair.eln.links import ElnLink, ElnRef, resolve_link
from microfair.eln.notify import ELN_RECORD, due_posts, eln_record, pending_posts, post_event, retry_pending, sweep

__all__ = ["ELN_RECORD", "ElnLink", "ElnRef", "due_posts", "eln_record", "pending_posts", "post_event",
           "resolve_link", "retry_pending", "sweep"]
