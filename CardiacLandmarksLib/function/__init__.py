"""LV and RV function from short-axis cine MR: segmentation, ED/ES, volumes, EF and LV mass.

Entry point: :func:`.pipeline.analyse_function` (CLI ``cardiac-landmarks function``, Slicer, batch).
"""

from CardiacLandmarksLib.function.pipeline import FunctionOptions, FunctionResult, analyse_function, recompute

__all__ = ["FunctionOptions", "FunctionResult", "analyse_function", "recompute"]
