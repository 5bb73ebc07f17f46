"""Entry point of ``make bench``: ``python bench/run.py [--quick] [--sections ...]``.

See bench/main.py for the options.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.main import main

    raise SystemExit(main())
