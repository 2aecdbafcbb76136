"""CardiacLandmarksLib: pure-Python core of the CardiacLandmarks 3D Slicer extension.

No ``slicer``, ``qt`` or ``vtk`` import happens anywhere in this package, so every
function here runs (and is tested) with plain pytest.

Data flow: series (:mod:`.series`) -> preprocessing (:mod:`.preprocessing`) ->
model (:mod:`.models`, :mod:`.inference`) -> landmarks (:mod:`.landmarks`,
:mod:`.decoding`) -> measurements (:mod:`.measurements`) -> outputs
(:mod:`.markups`, :mod:`.report`).
"""

__version__ = "0.1.0"
