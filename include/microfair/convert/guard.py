"""Reader warnings that mean lost pixels, turned into errors.

Some readers do not raise when a file holds less than its header declares: tifffile, for
example, logs ``OME series is missing 4 frames. Missing data are zeroed`` and returns zeros.
A conversion must not publish such an image as if it were whole. :func:`watch_reader_warnings`
listens to the readers' loggers while the pixels are read and collects every warning that says
data are missing, zeroed, truncated, corrupt or unreadable; :func:`convert_to_zarr` fails when
there is one.

Log records are seen in this process only: the threaded scheduler and a LocalCluster with
thread workers (a Celery worker). With separate dask worker processes the warning is in the
worker's log, and readers that raise (most decode errors) still fail the conversion. Two conversions
running in threads of one process hear each other's warnings (a false alarm fails one conversion, which a
re-run repeats cleanly; no lost pixels are ever published).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

#: Loggers of the readers behind bioio's plugins.
READER_LOGGERS = ("tifffile", "bioio", "bioio_base", "bioio_ome_tiff", "bioio_tifffile", "bioio_czi",
                  "bioio_lif", "bioio_nd2", "aicspylibczi", "pylibCZIrw", "readlif", "nd2")

#: Phrases of a warning that says pixels were lost or replaced.
DATA_LOSS = re.compile(r"missing data|are zeroed|is missing \d+|missing (?:frames|pages|files)|failed to read|"
                       r"truncat|corrupt|cannot decode|decode error|invalid tiffdata", re.IGNORECASE)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not our problem here
            return
        if DATA_LOSS.search(text) and text not in self.messages:
            self.messages.append(text)


@contextmanager
def watch_reader_warnings() -> Iterator[list[str]]:
    """``with watch_reader_warnings() as lost:`` — ``lost`` lists the data-loss warnings seen."""
    collector = _Collector()
    loggers = [logging.getLogger(name) for name in READER_LOGGERS]
    for lg in loggers:
        lg.addHandler(collector)
    try:
        yield collector.messages
    finally:
        for lg in loggers:
            lg.removeHandler(collector)
