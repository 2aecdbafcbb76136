"""The fixed ACDC test split is never trained on (issue 16/17: a test split no training or choice sees)."""

from __future__ import annotations

from CardiacLandmarksLib.datasets.sax import acdc_cases, development_split
from CardiacLandmarksLib.datasets.sax import test_cases as split_test_cases
from CardiacLandmarksLib.datasets.splits import ACDC_CHALLENGE_TEST, ACDC_TEST_PATIENTS
from CardiacLandmarksLib.models.catalogue import read_card


def test_split_has_twenty_patients_of_every_group(acdc_dir):
    cases = acdc_cases(acdc_dir)
    test = split_test_cases(cases)
    assert len(ACDC_TEST_PATIENTS) == 20 == len({c.patient for c in test})
    assert {c.group for c in test} == {"DCM", "HCM", "MINF", "NOR", "RV"}
    assert all(c.patient in ACDC_TEST_PATIENTS for c in test)


def test_development_split_leaves_test_patients_out_for_any_seed(acdc_dir):
    cases = acdc_cases(acdc_dir)
    for seed in (0, 1, 7):
        train, val = development_split(cases, 0.2, seed)
        seen = {c.patient for c in train + val}
        assert not seen & set(ACDC_TEST_PATIENTS)
        assert len(seen) == len({c.patient for c in cases}) - 20
    # seed 0: the same training patients as the bundled models (the challenge patients did not exist then)
    train0, _ = development_split(cases, 0.2, 0)
    assert not {c.patient for c in train0} & set(ACDC_CHALLENGE_TEST)
    card = read_card("sax_unet")
    # (v1.4 was fine-tuned from v1.3.1 on the same ACDC patients, plus EMIDEC cases and perfusion patients)
    acdc_train = [p for p in card["training"]["train_patients"] if p.startswith("patient")]
    assert sorted({c.patient for c in train0}) == sorted(acdc_train)
