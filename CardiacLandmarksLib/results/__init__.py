"""Result folders of ``cardiac-landmarks detect``: find, read, correct, recompute, save.

What a front end that lets a reader correct points (the web app in :mod:`CardiacLandmarksLib.web`,
scripts, the console) needs around :mod:`CardiacLandmarksLib.core.review` (the review queue and the
correction rule shared with the Slicer panel); nothing numerical lives in a front end.
"""

from CardiacLandmarksLib.results.folders import (
    RESULT_FILE,
    ReviewError,
    SaveInProgressError,
    confirm_landmark,
    correct_landmark,
    find_results,
    load_source,
    newer_point_lists,
    read_result,
    recompute_measurements,
    save_result,
)

__all__ = [
    "RESULT_FILE",
    "ReviewError",
    "SaveInProgressError",
    "confirm_landmark",
    "correct_landmark",
    "find_results",
    "load_source",
    "newer_point_lists",
    "read_result",
    "recompute_measurements",
    "save_result",
]
