"""Entry point of ``python -m agent.memory``."""

import sys

from agent.memory.cli import main

sys.exit(main())
