"""``python main.py [flags]``: the service, as ``marketpulse serve`` with the same flags.

For a clone used the pip way: it runs after ``pip install -r requirements.txt`` alone (without
``pip install -e .``), because this checkout's ``src/`` goes first on the import path, so it is
this checkout's code that runs even where another ``marketpulse`` is installed.
``python main.py --help`` lists the flags; settings: flags, then the environment, then ``.env``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from marketpulse.cli import serve_main  # after the path above (ruff allows it: E402)

if __name__ == "__main__":
    raise SystemExit(serve_main(prog="main.py"))
