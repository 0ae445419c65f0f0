"""Where the validate stage records a dataset's notebook link: the ``eln`` record, REMBI and Dublin Core."""

from __future__ import annotations

import logging
from typing import Any

from microfair.eln.links import ElnRef, resolve_link
from microfair.eln.notify import ELN_RECORD, eln_record

log = logging.getLogger(__name__)


def link_dataset(cfg: Any, ledger: Any, uid: str, sidecar: Any, defaults: Any,
                 dublin_core: dict[str, Any], rembi: dict[str, Any]) -> ElnRef | None:
    """Resolve the sidecar's ``eln`` (else the project's), store the record and carry the link into the records.

    REMBI: ``study_component.eln_entry``; Dublin Core: ``relation`` (added to what is there).
    """
    base = getattr(getattr(cfg, "eln", None), "base_url", None)
    link, source = getattr(sidecar, "eln", None), "sidecar"
    if link is None:
        link, source = getattr(defaults, "eln", None), "project default"
    ref = resolve_link(link, base_url=base, source=source)
    if ref is None:
        return None
    ledger.put_record(uid, ELN_RECORD, eln_record(ref, ledger.get_record(uid, ELN_RECORD)))
    rembi.setdefault("study_component", {})["eln_entry"] = ref.label
    relation = dublin_core.get("relation")
    relations = [r for r in (relation if isinstance(relation, list) else [relation]) if r]
    if ref.label not in relations:
        relations.append(ref.label)
    dublin_core["relation"] = relations if len(relations) > 1 else relations[0]
    if "relation" in (dublin_core.get("missing") or []):
        dublin_core["missing"] = [m for m in dublin_core["missing"] if m != "relation"]
    log.info("%s: linked to %s (%s, from the %s)", uid, ref.label, ref.system, source)
    return ref
