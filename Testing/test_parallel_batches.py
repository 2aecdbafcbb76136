"""Batches side by side on CPU (``models.loader.run_batches``) and the SAX pipeline that uses them."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from CardiacLandmarksLib.core.errors import InvalidImageError
from CardiacLandmarksLib.models import loader
from CardiacLandmarksLib.sax.pipeline import Cancelled


@pytest.fixture
def two_threads():
    """Torch at 2 intra-op threads for the test (CI's 2 cores may give 1 by default); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _where(x: int) -> tuple:
    time.sleep(0.02 * (x % 3))  # uneven batch times: a later batch may finish first
    return x, threading.current_thread().name, torch.get_num_threads()


def test_run_batches_side_by_side_keeps_order_and_restores_threads(two_threads):
    out = list(loader.run_batches(_where, iter(range(12)), "cpu", 12))
    assert [o[0] for o in out] == list(range(12))
    names = {o[1] for o in out}
    assert len(names) == 2 and all(n.startswith("cardiac-landmarks") for n in names)
    assert {o[2] for o in out} == {1}  # the two threads are divided between the two workers
    assert torch.get_num_threads() == 2


def test_run_batches_one_at_a_time_in_the_calling_thread(two_threads):
    me = threading.current_thread().name
    for device, n_batches, threads in (("cuda", 12, 2), ("cpu", 1, 2), ("cpu", 12, 1)):
        torch.set_num_threads(threads)
        out = list(loader.run_batches(_where, iter(range(4)), device, n_batches))
        assert [o[0] for o in out] == [0, 1, 2, 3]
        assert {o[1] for o in out} == {me} and {o[2] for o in out} == {threads}
    assert loader.cpu_workers("cuda", 100) == 1
    torch.set_num_threads(8)
    assert loader.cpu_workers("cpu", 100) == loader.MAX_CPU_WORKERS
    assert loader.cpu_workers("cpu", 3) == 3


def test_run_batches_errors_keep_their_type_and_restore_threads(two_threads):
    def bad(x):
        if x == 3:
            raise InvalidImageError("batch 3 is broken")
        return x

    with pytest.raises(InvalidImageError, match="batch 3"):
        list(loader.run_batches(bad, iter(range(8)), "cpu", 8))
    assert torch.get_num_threads() == 2

    def producer():
        yield from range(3)
        raise Cancelled("stopped by the user")

    got = []
    with pytest.raises(Cancelled):
        for x in loader.run_batches(lambda x: x, producer(), "cpu", 8):
            got.append(x)
    assert got == [0, 1] and torch.get_num_threads() == 2  # batch 2 was still running when the producer stopped


@pytest.fixture(scope="module")
def sunnybrook_four_phases(sunnybrook_dicom):
    """The Sunnybrook cine's first 4 phases: 48 real images, 3 network batches per worker on 2 threads."""
    from CardiacLandmarksLib.io.load import load_series

    s = load_series(sunnybrook_dicom)
    return replace(s, pixels=np.ascontiguousarray(s.pixels[:4]))


def _spy_threads(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a wrapper that records the name of the thread of every call; returns the record."""
    seen = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_sax_stack_side_by_side_equals_one_at_a_time(sunnybrook_four_phases, two_threads, monkeypatch):
    """Real stack, 2 threads: chunks in two workers give what the one-at-a-time run gives (found, flags, doubts
    exactly; positions and confidences to float rounding), with progress in order to the end."""
    from CardiacLandmarksLib.sax import pipeline
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    series = sunnybrook_four_phases
    total = series.n_slices * series.n_phases
    seen = _spy_threads(monkeypatch, pipeline, "locate_all")
    calls = []
    side = detect_landmarks(series, device="cpu", progress=lambda d, t: calls.append((d, t)))
    assert len({n for n in seen if n.startswith("cardiac-landmarks")}) == 2
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (total, total)
    assert torch.get_num_threads() == 2

    seen.clear()
    monkeypatch.setattr(loader, "MAX_CPU_WORKERS", 1)
    one = detect_landmarks(series, device="cpu")
    assert set(seen) == {threading.current_thread().name}

    assert len(side.landmarks) == len(one.landmarks) == 3 * total
    assert sum(lm.found for lm in one.landmarks) > total  # a real detection, not an empty one
    for a, b in zip(side.landmarks, one.landmarks):
        assert (a.name, a.slice, a.phase, a.found, a.flag, a.doubt) == (b.name, b.slice, b.phase, b.found, b.flag, b.doubt)
        if a.found:
            assert np.abs(a.position - b.position).max() < 1e-3
            assert abs(a.confidence - b.confidence) < 1e-4
    assert [m.status for m in side.measurements] == [m.status for m in one.measurements]


def test_sax_stack_cancel_while_chunks_run(sunnybrook_four_phases, two_threads):
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 3  # after three chunks were handed out

    with pytest.raises(Cancelled):
        detect_landmarks(sunnybrook_four_phases, device="cpu", cancel=cancel)
    assert torch.get_num_threads() == 2


def test_function_segmentation_slices_side_by_side_equal_one_at_a_time(sunnybrook_four_phases, two_threads,
                                                                       monkeypatch):
    """The LV/RV segmentation of a real cine (4 phases x 12 slices), slices in two workers against one at a time:
    the same labels, class probabilities to float16 rounding."""
    from CardiacLandmarksLib.function import segmentation
    from CardiacLandmarksLib.models.loader import load_model

    model = load_model("sax", "cpu", name="sax_unet_function")
    seen = _spy_threads(monkeypatch, segmentation, "model_canvases")
    side, side_conf = segmentation.segment_series(sunnybrook_four_phases, model, return_confidence=True)
    assert len({n for n in seen if n.startswith("cardiac-landmarks")}) == 2 and torch.get_num_threads() == 2
    seen.clear()
    monkeypatch.setattr(loader, "MAX_CPU_WORKERS", 1)
    one, one_conf = segmentation.segment_series(sunnybrook_four_phases, model, return_confidence=True)
    assert set(seen) == {threading.current_thread().name}
    assert {1, 2, 3} <= set(np.unique(one).tolist())  # RV, myocardium and LV cavity all segmented
    np.testing.assert_array_equal(side, one)
    assert np.abs(side_conf.astype(np.float32) - one_conf.astype(np.float32)).max() <= 1e-3


def test_a_raising_progress_callback_leaves_torch_threads_restored(sunnybrook_four_phases, two_threads):
    """The caller's own callback raising between chunks (e.g. a closed window) must not leave torch on one thread
    for the rest of the session: the side-by-side run is closed on the way out."""
    from CardiacLandmarksLib.function import segmentation
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks

    def stop(*_):
        raise KeyboardInterrupt("window closed")

    # the tracebacks are kept alive while checking, as an application that shows or logs the error keeps them
    with pytest.raises(KeyboardInterrupt) as first:
        detect_landmarks(sunnybrook_four_phases, device="cpu", progress=stop)
    assert torch.get_num_threads() == 2
    with pytest.raises(KeyboardInterrupt) as second:
        segmentation.segment_series(sunnybrook_four_phases, load_model("sax", "cpu", name="sax_unet_function"),
                                    progress=stop)
    assert torch.get_num_threads() == 2
    assert first.traceback and second.traceback
