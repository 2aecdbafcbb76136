"""Review of detection results: read a result folder, list the flagged points, apply a reader's
corrections, recompute the measurements and save the command line's files again.

Every front end that lets a reader correct points (the web app in :mod:`CardiacLandmarksLib.web`,
scripts, the console) goes through these functions; nothing numerical lives in a front end.
"""

from CardiacLandmarksLib.review.results import (
    RESULT_FILE,
    ReviewError,
    SaveInProgressError,
    correct_landmark,
    find_results,
    flagged_landmarks,
    newer_point_lists,
    read_result,
    recompute_measurements,
    save_result,
)

__all__ = [
    "RESULT_FILE",
    "ReviewError",
    "SaveInProgressError",
    "correct_landmark",
    "find_results",
    "flagged_landmarks",
    "newer_point_lists",
    "read_result",
    "recompute_measurements",
    "save_result",
]
