"""The datasets table (``/datasets``), a dataset's detail and its QC thumbnails."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse

from microfair.monitor import DatasetQuery, dataset_detail, dataset_page, filter_choices
from microfair.monitor.datasets import qc_thumbnails, thumbnail_file
from microfair.monitor.qc_view import metadata_entries, qc_scenes
from microfair.monitor.records import other_records, record_view
from microfair_dashboard.deps import Api, FacilityDep, HasConnection, Loaded, MayClear
from microfair_dashboard.security import Reader
from microfair_dashboard.views.common import airflow_states, params, ref

router = APIRouter()


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, user: Reader, loaded: Loaded, fac: FacilityDep, has_conn: HasConnection,
                  q: str | None = None, microscope: str | None = None, project: str | None = None,
                  state: str | None = None, stage: str | None = None, stage_state: str | None = None,
                  page: int = Query(1, ge=1), page_size: int | None = Query(None, ge=5, le=500)) -> HTMLResponse:
    from microfair_dashboard.app import render

    cfg, ledger = loaded
    try:
        query = DatasetQuery(q=q, microscope=microscope or None, project=project or None, state=state or None,
                             stage=stage or None, stage_state=stage_state or None, page=page,
                             page_size=page_size or cfg.dashboard.page_size)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    availability = fac.availability(has_conn)
    result = dataset_page(ledger, query, availability)
    return render(request, "datasets.html", user, result=result, choices=filter_choices(ledger),
                  availability=availability, params=params(request))


@router.get("/datasets/{uid}", response_class=HTMLResponse)
def dataset_view(request: Request, uid: str, user: Reader, loaded: Loaded, fac: FacilityDep, api: Api,
                 may: MayClear, has_conn: HasConnection, msg: str | None = None) -> HTMLResponse:
    from microfair_dashboard.app import render

    cfg, ledger = loaded
    availability = fac.availability(has_conn)
    detail = dataset_detail(ledger, uid, availability)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {uid!r} in the ledger")
    failed = [e for e in detail.events if e.id in detail.failed_now and e.task_id]
    qc = detail.records.get("qc")
    thumbs = qc_thumbnails(qc)
    scenes = qc_scenes(qc, thumbs)
    in_tables = {c.thumbnail for s in scenes for c in s.channels} | {s.composite for s in scenes}
    views = {k: record_view(k, detail.records[k]) for k in ("irods", "bia", "datacite") if k in detail.records}
    return render(request, "dataset.html", user, d=detail, ds=detail.dataset, msg=msg,
                  views=views, others=other_records(detail.records),
                  thumbnails=thumbs, scenes=scenes, loose_thumbs=[i for i in range(len(thumbs)) if i not in in_tables],
                  dublin_core=metadata_entries(detail.records.get("dublin_core")),
                  rembi=metadata_entries(detail.records.get("rembi")),
                  can_clear={e.id: may(user, e.dag_id) for e in detail.errors},
                  can_release=detail.quarantined and any(may(user, e.dag_id or "microfair_ingest")
                                                         for e in detail.events if e.id in detail.failed_now),
                  refs={e.id: ref(e) for e in failed}, airflow_states=airflow_states(api, failed),
                  availability=availability)


@router.get("/datasets/{uid}/thumbnails/{n}")
def thumbnail(uid: str, n: int, user: Reader, loaded: Loaded) -> FileResponse:
    cfg, ledger = loaded
    real = thumbnail_file(cfg.storage.reports, cfg.storage.converted, ledger, uid, n)
    if real is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "thumbnail not found in the dataset's report folder")
    return FileResponse(real, media_type=mimetypes.guess_type(real.name)[0] or "application/octet-stream",
                        headers={"Cache-Control": "private, max-age=3600"})


@router.get("/datasets/{uid}/ro-crate")
def ro_crate(uid: str, user: Reader, loaded: Loaded) -> FileResponse:
    from microfair.provenance.write import crate_file

    cfg, ledger = loaded
    path = crate_file(cfg, ledger, uid)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no RO-Crate in the dataset's report folder yet")
    return FileResponse(path, media_type="application/ld+json", filename=f"{uid}-ro-crate-metadata.json")
