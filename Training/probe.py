"""Linear probe of image features (--features) per finding (TotalFMLib/training/probe.py). Options: --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from TotalFMLib.training.probe import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
