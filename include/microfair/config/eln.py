"""Electronic lab notebook links (guide §3.2.3): where the ELN is and when microfair writes back to it.

The API key is never here: it is the password of the Airflow connection named below.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from microfair.config.core import Strict


class ElnSettings(Strict):
    connection_id: str = Field("elabftw_default", description="Airflow connection of the eLabFTW instance "
                                                              "(host = its address, password = an API key)")
    base_url: str | None = Field(None, description="the eLabFTW address, to turn a bare entry id "
                                                   "(`eln: elabftw:42`) into a link; the connection host when empty")
    post_back: list[Literal["ingested", "deposited"]] = Field(
        default_factory=lambda: ["ingested", "deposited"],
        description="events for which microfair comments on the linked eLabFTW entry; [] to only link")
