"""``python -m pipelinejobs.cli``: the same command as ``pipelinejobs``."""

import sys

from pipelinejobs.cli import main

sys.exit(main())
