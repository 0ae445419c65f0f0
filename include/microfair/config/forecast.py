"""Storage forecast and footprint settings (``forecast:`` in the facility YAML).

The footprint factors are rough, configurable estimates; docs/forecast.md gives each default's source.
"""

from __future__ import annotations

from pydantic import Field

from microfair.config.core import Strict


class ForecastSettings(Strict):
    weeks: int = Field(12, ge=2, le=104, description="growth per week: least squares over the last N weeks")
    warn_days: int = Field(60, ge=1, description="warn (dashboard) and alert when a tier fills within N days")
    kwh_per_tb_year: float = Field(
        10.0, ge=0, description="electricity per stored TB per year at the drive (HDD; see docs/forecast.md)")
    pue: float = Field(1.5, ge=1, description="power usage effectiveness of the server room (cooling, power losses)")
    grid_kgco2e_per_kwh: float = Field(
        0.052, ge=0, description="carbon intensity of the electricity (France, ADEME Base Empreinte, mix moyen)")
    target_capacity_bytes: dict[str, int] = Field(
        default_factory=dict, description="size of each backup target's storage, by target name, when it is "
                                          "not a local path microfair can measure")
