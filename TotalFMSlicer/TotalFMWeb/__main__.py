"""``python -m TotalFMWeb``: the same as ``totalfm serve``."""
import sys

from .serve import main

sys.exit(main())
