"""``python -m recmf``: see recmf.cli."""
import sys

from .cli import main

sys.exit(main())
