"""Fixed data splits shared by training, calibration and evaluation.

The ACDC **test split** (20 patients) is never used for training, calibration or any model choice; it is
only reported on (``cardiac-landmarks evaluate --split test`` and ``evaluate --suite``). It is:

* the 15 ACDC challenge test patients in the shared data (``patient101``-``patient121``: three per group), never
  seen by any model of this project, and
* one patient per pathology group of the original 80 (``patient003`` DCM, ``patient023`` HCM, ``patient043``
  MINF, ``patient066`` NOR, ``patient081`` RV: the first validation patient of each group in the split of SAX
  models up to v1.3.1, ``split_by_patient(seed=0, val_fraction=0.2)`` on patients 1-100).

Models up to v1.3.1 chose their epoch and calibrated their thresholds on those five, so for them only the
15 ``UNSEEN_BY_V1_3`` patients are an untouched test; the cards say so.
"""

from __future__ import annotations

ACDC_CHALLENGE_TEST = tuple(f"patient{n:03d}" for n in (101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 112, 113,
                                                          115, 119, 121))
ACDC_FROM_TRAINING = ("patient003", "patient023", "patient043", "patient066", "patient081")
ACDC_TEST_PATIENTS: tuple[str, ...] = ACDC_CHALLENGE_TEST + ACDC_FROM_TRAINING
UNSEEN_BY_V1_3: tuple[str, ...] = ACDC_CHALLENGE_TEST


def is_acdc_test(patient: str) -> bool:
    """True for a patient id (``"patient003"``) of the fixed ACDC test split."""
    return patient in ACDC_TEST_PATIENTS

#: fixed EMIDEC LGE test split (20 of the 100 cases: every fifth in sorted order, from the third; 7 normal, 13
#: infarct), never used for training, calibration or model choice; the suite's EMIDEC row reports on these
EMIDEC_TEST_CASES: tuple[str, ...] = (
    "Case_N013", "Case_N023", "Case_N032", "Case_N041", "Case_N052", "Case_N070", "Case_N089", "Case_P005",
    "Case_P011", "Case_P022", "Case_P035", "Case_P044", "Case_P053", "Case_P060", "Case_P066", "Case_P073",
    "Case_P080", "Case_P087", "Case_P093", "Case_P098")


def is_test_case(patient: str) -> bool:
    """True for a patient / case id of any fixed test split (ACDC or EMIDEC)."""
    return patient in ACDC_TEST_PATIENTS or patient in EMIDEC_TEST_CASES
