"""``python -m CardiacLandmarksLib.web PATH [--host H] [--port P]``: same as ``cardiac-landmarks review``."""

import sys

from CardiacLandmarksLib.cli import main

if __name__ == "__main__":
    sys.exit(main(["review", *sys.argv[1:]]))
