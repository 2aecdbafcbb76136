"""Landmark definitions per view and the LandmarkSet that every output is written from.

Names follow Xue et al., "Landmark detection in cardiac MRI by using a convolutional
neural network", Radiology: AI 2021: SAX ``A-RVI`` (anterior RV insertion), ``I-RVI``
(inferior RV insertion), ``C-LV`` (LV centre); long-axis mitral points ``A-P``/``I-P``
(2CH), ``IL-P``/``AS-P`` (3CH), ``AL-P``/``IS-P`` (4CH) and ``APEX``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

LANDMARKS_BY_VIEW: dict[str, tuple[str, ...]] = {
    "sax": ("A-RVI", "I-RVI", "C-LV"),
    "2ch": ("A-P", "I-P", "APEX"),
    "3ch": ("IL-P", "AS-P", "APEX"),
    "4ch": ("AL-P", "IS-P", "APEX"),
}

FLAGS = ("high", "low", "absent")


@dataclass
class Landmark:
    """One landmark on one slice and phase.

    Attributes:
        name: landmark name (see :data:`LANDMARKS_BY_VIEW`).
        slice: slice index k in the input series.
        phase: phase index t (0 for single-phase input).
        found: False when the model says the landmark is not present on this slice.
        position: LPS mm ``(x, y, z)``; NaN when not found.
        ijk: continuous voxel index ``(i, j, k)`` in the input image; NaN when not found.
        confidence: in [0, 1]; 0 when not found.
        flag: ``"high"``, ``"low"`` or ``"absent"``.
        corrected: True when a user placed or moved the point (the confidence then is 1).
    """

    name: str
    slice: int
    phase: int
    found: bool
    position: np.ndarray
    ijk: np.ndarray
    confidence: float
    flag: str
    corrected: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["position"] = [float(x) for x in np.asarray(self.position, float)] if self.found else None
        d["ijk"] = [float(x) for x in np.asarray(self.ijk, float)] if self.found else None
        d["confidence"] = float(self.confidence)
        d["found"] = bool(self.found)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Landmark:
        nan3 = np.full(3, np.nan)
        return cls(
            name=d["name"],
            slice=int(d["slice"]),
            phase=int(d.get("phase", 0)),
            found=bool(d["found"]),
            position=np.asarray(d["position"], float) if d.get("position") is not None else nan3.copy(),
            ijk=np.asarray(d["ijk"], float) if d.get("ijk") is not None else nan3.copy(),
            confidence=float(d.get("confidence", 0.0)),
            flag=d.get("flag", "high" if d["found"] else "absent"),
            corrected=bool(d.get("corrected", False)),
        )


@dataclass
class Measurement:
    """A scalar result: ``name`` (e.g. ``"RVI angle"``), slice, phase, value, unit."""

    name: str
    slice: int | None
    phase: int | None
    value: float
    unit: str

    def to_dict(self) -> dict:
        return {"name": self.name, "slice": self.slice, "phase": self.phase,
                "value": None if not np.isfinite(self.value) else float(self.value), "unit": self.unit}


@dataclass
class LandmarkSet:
    """All landmarks of one series plus the measurements made on them.

    ``to_dict`` gives the ``landmarks.json`` layout documented in the README:
    ``{"source", "view", "model": {"name","version","sha256"}, "coordinate_system": "LPS",
    "units": "mm", "landmarks": [...], "measurements": [...]}``.
    """

    source: str
    view: str
    model: dict
    landmarks: list[Landmark] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)

    _index: dict | None = field(default=None, init=False, repr=False, compare=False)

    def get(self, name: str, slice: int, phase: int = 0) -> Landmark | None:
        """The landmark ``name`` on (slice, phase), or None.

        O(1) on average: a (name, slice, phase) -> list position index, checked against the list on
        every hit and rebuilt on a miss, so callers may append, sort, replace or rename entries freely.
        """
        key = (name, slice, phase)
        for attempt in range(2):
            if attempt or self._index is None:
                self._index = {}
                for pos, lm in enumerate(self.landmarks):
                    self._index.setdefault((lm.name, lm.slice, lm.phase), pos)
            pos = self._index.get(key)
            if pos is not None and pos < len(self.landmarks):
                lm = self.landmarks[pos]
                if (lm.name, lm.slice, lm.phase) == key:
                    return lm
        return None

    def slices_phases(self) -> list[tuple[int, int]]:
        """Sorted distinct (slice, phase) pairs that have landmarks."""
        return sorted({(lm.slice, lm.phase) for lm in self.landmarks})

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "view": self.view,
            "model": dict(self.model),
            "coordinate_system": "LPS",
            "units": "mm",
            "landmarks": [lm.to_dict() for lm in self.landmarks],
            "measurements": [m.to_dict() for m in self.measurements],
        }

    @classmethod
    def from_dict(cls, d: dict) -> LandmarkSet:
        if d.get("coordinate_system", "LPS") != "LPS":
            raise ValueError(f"landmarks file uses coordinate system {d.get('coordinate_system')!r}; expected 'LPS'")
        return cls(
            source=d.get("source", ""),
            view=d.get("view", "sax"),
            model=d.get("model", {}),
            landmarks=[Landmark.from_dict(x) for x in d.get("landmarks", [])],
            measurements=[
                Measurement(m["name"], m.get("slice"), m.get("phase"),
                            float("nan") if m.get("value") is None else float(m["value"]), m.get("unit", ""))
                for m in d.get("measurements", [])
            ],
        )
