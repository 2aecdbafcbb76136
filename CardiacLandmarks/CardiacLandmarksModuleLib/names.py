"""Attribute and node-reference names of a landmark result node (the "hub" ``vtkMRMLTextNode``).

Shared by the module logic (short axis) and :mod:`.lax` (long axis); no imports, so the module
file can use them before the library's dependencies are installed.
"""

RESULT_ATTRIBUTE = "CardiacLandmarks.Result"
#: the result folder a result was opened from (``logic.openResult``)
RESULT_FOLDER_ATTRIBUTE = "CardiacLandmarks.ResultFolder"
GEOMETRY_ATTRIBUTE = "CardiacLandmarks.Geometry"
INPUT_REFERENCE = "input"
POINT_LIST_REFERENCE = "pointList"
MARKUPS_SEQUENCE_REFERENCE = "markupsSequence"
IMAGE_SEQUENCE_REFERENCE = "imageSequence"
BROWSER_REFERENCE = "browser"
TABLE_REFERENCE = "measurements"
