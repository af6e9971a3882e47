"""``python -m TotalFMLib`` is the ``totalfm`` command."""
import sys

from .cli import main

sys.exit(main())
