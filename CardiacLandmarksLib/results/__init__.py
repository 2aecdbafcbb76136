"""Result folders of ``cardiac-landmarks detect``: find, read, correct, recompute, save, and carry a review into a
re-run.

What a front end that lets a reader correct points (the web app in :mod:`CardiacLandmarksLib.web`,
scripts, the console) needs around :mod:`CardiacLandmarksLib.core.review` (the review queue and the
correction rule shared with the Slicer panel); nothing numerical lives in a front end.
"""

from CardiacLandmarksLib.results.folders import (
    RESULT_FILE,
    CarriedReview,
    ResultChangedError,
    ReviewError,
    SaveInProgressError,
    carry_review,
    carry_review_from,
    confirm_landmark,
    correct_landmark,
    discard_unsaved,
    find_results,
    keep_unsaved,
    load_source,
    newer_point_lists,
    read_result,
    read_unsaved,
    recompute_measurements,
    result_sha256,
    save_result,
)

__all__ = [
    "RESULT_FILE",
    "ResultChangedError",
    "ReviewError",
    "CarriedReview",
    "SaveInProgressError",
    "carry_review",
    "carry_review_from",
    "confirm_landmark",
    "correct_landmark",
    "discard_unsaved",
    "find_results",
    "keep_unsaved",
    "load_source",
    "newer_point_lists",
    "read_result",
    "read_unsaved",
    "recompute_measurements",
    "result_sha256",
    "save_result",
]
