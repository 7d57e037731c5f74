"""Energy and carbon of what cnnlab computes, through CodeCarbon's offline tracker.

One tracker per process (``meter()``), started on first use, never any network. Work is
measured in phases (``with meter().phase("training"):``); phases nest, and an inner phase's
energy is its own: the outer phase is paused while it runs, so the phases of a process add up
to its total. Carbon is computed per run from its energy and the grid of the country it names
(``--country``, ISO 3166 alpha-3), using CodeCarbon's offline energy-mix table; without a
country a run reports energy only.

Measured or estimated: CodeCarbon reads Intel RAPL counters or a GPU's NVML counters where
the machine exposes them (measured). Elsewhere it estimates CPU power as the CPU's TDP (or 4 W
per thread for a CPU model it does not know) times this process's CPU load, and RAM power
from its size: an estimate that is a rescaled running time, and every report says so.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

from cnnlab.errors import CnnlabError

MISSING = "pip install 'cnnlab[audit]' (it needs codecarbon)"


def carbon_intensity(country: str) -> tuple[float, str]:
    """(gCO2eq per kWh, country name) of a country's grid, from CodeCarbon's offline table."""
    table = _energy_mix()
    code = country.upper()
    if code not in table:
        raise CnnlabError(f"unknown country code {country!r}: give an ISO 3166 alpha-3 code such "
                          f"as FRA, USA, DEU or IND ({len(table)} known)")
    return float(table[code]["carbon_intensity"]), table[code]["country_name"]


def _energy_mix() -> dict:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise CnnlabError(f"carbon figures need CodeCarbon's energy-mix table: {MISSING}")
    path = Path(spec.submodule_search_locations[0]) / "data" / "private_infra" / "global_energy_mix.json"
    return json.loads(path.read_text())


FRESH = 0.01
"""Seconds within which a measurement is as good as a new one (``Meter.checkpoint``)."""


class Meter:
    """The process's energy meter: a stack of named phases over one CodeCarbon tracker."""

    def __init__(self) -> None:
        self.available = importlib.util.find_spec("codecarbon") is not None
        self._tracker = None
        self._stack: list[tuple[str, dict]] = []
        self.totals: dict[str, dict] = {}
        self._method: dict | None = None
        self._measured_at = float("-inf")  # perf_counter of the last measurement

    def _start(self) -> None:
        if self._tracker is None:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.CRITICAL)  # after its import sets it

            # the country only sets CodeCarbon's own carbon figure, which cnnlab does not use
            self._tracker = OfflineEmissionsTracker(
                country_iso_code="USA", output_methods=[], log_level="critical",
                tracking_mode="process", measure_power_secs=5)
            self._tracker.start()

    @contextmanager
    def phase(self, name: str):
        """Measure the enclosed work as phase ``name``; yields a dict filled on exit with its
        kWh and seconds, inner phases excluded (empty when CodeCarbon is not installed)."""
        record: dict = {}
        if not self.available:
            yield record
            return
        self._start()
        if self._stack:
            self._stop_task()  # pause the outer phase: its energy so far goes to its record
        self._tracker.start_task(name)
        self._stack.append((name, record))
        try:
            yield record
        finally:
            self._stop_task()
            self._stack.pop()
            if self._stack:
                self._tracker.start_task(self._stack[-1][0])

    def _stop_task(self) -> None:
        """Stop the running task; add its energy to its phase's record and totals."""
        data = self._tracker.stop_task()
        self._measured_at = time.perf_counter()
        name, record = self._stack[-1]
        part = {"kwh": float(data.energy_consumed), "seconds": float(data.duration),
                "cpu_kwh": float(data.cpu_energy), "ram_kwh": float(data.ram_energy),
                "gpu_kwh": float(data.gpu_energy)}
        total = self.totals.setdefault(name, {k: 0.0 for k in part})
        for k, v in part.items():
            total[k] += v
            record[k] = record.get(k, 0.0) + v

    def checkpoint(self) -> None:
        """Bring the totals up to now (the running phase is measured and goes on). Within
        FRESH seconds of the last measurement (an epoch's evaluation phase just ended) the
        totals already are: each measurement scans the process tree (milliseconds, thousands
        of times in ``cnnlab run``), and the moment left over counts in the next one."""
        if self.available and self._stack and time.perf_counter() - self._measured_at > FRESH:
            self._stop_task()
            self._tracker.start_task(self._stack[-1][0])

    def kwh_since(self, before: dict[str, dict]) -> float | None:
        """kWh of every phase since ``before`` (None without CodeCarbon)."""
        if not self.available:
            return None
        self.checkpoint()
        return sum(p["kwh"] for p in self.since(before).values())

    def snapshot(self) -> dict[str, dict]:
        """A copy of the totals so far, to subtract later (``since``)."""
        return {k: dict(v) for k, v in self.totals.items()}

    def since(self, before: dict[str, dict]) -> dict[str, dict]:
        """Each phase's energy since ``before`` was taken (phases with none left out)."""
        out = {}
        for name, total in self.totals.items():
            prev = before.get(name, {})
            d = {k: v - prev.get(k, 0.0) for k, v in total.items()}
            if d["seconds"] > 0:
                out[name] = d
        return out

    def method(self) -> dict:
        """How the energy is obtained: measured (RAPL, NVML) or estimated, in words."""
        if self._method is None:
            self._method = self._find_method()
        return self._method

    def _find_method(self) -> dict:
        if not self.available:
            return {"kind": "not measured", "words": f"energy not measured: {MISSING}"}
        self._start()
        modes = {type(h).__name__: getattr(h, "_mode", "") for h in self._tracker._hardware}
        measured = modes.get("CPU") == "intel_rapl" or "GPU" in modes
        words = ("measured: CodeCarbon read the CPU's RAPL counters" if modes.get("CPU") == "intel_rapl"
                 else "measured on the GPU (NVML), CPU estimated" if "GPU" in modes else
                 "estimated: no RAPL or GPU counters on this machine, so CodeCarbon takes CPU "
                 "power as the CPU's TDP (its default of 4 W per thread where its table lacks "
                 "the CPU model) times this "
                 "process's CPU load, plus RAM power from its size. Such energy is a rescaled "
                 "running time, not a measurement")
        return {"kind": "measured" if measured else "estimated", "words": words, "modes": modes,
                "cpu_model": self._tracker.get_detected_hardware().get("cpu_model", "")}


_METER: Meter | None = None


def meter() -> Meter:
    """The process's one energy meter (created on first use)."""
    global _METER
    if _METER is None:
        _METER = Meter()
    return _METER


def carbon(kwh: float, country: str) -> dict:
    """gCO2eq of ``kwh`` on the grid of ``country`` ("" gives none, and says so)."""
    if not country:
        return {"g_co2eq": None, "country": "", "words": "no carbon figure: give --country "
                "(ISO 3166 alpha-3, e.g. FRA) to convert energy to gCO2eq"}
    intensity, name = carbon_intensity(country)
    return {"g_co2eq": kwh * intensity, "country": country.upper(), "country_name": name,
            "g_per_kwh": intensity, "words": f"{name}'s grid at {intensity:.0f} gCO2eq/kWh "
            "(CodeCarbon's offline energy-mix table)"}
