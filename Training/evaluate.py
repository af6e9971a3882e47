"""Zero-shot evaluation on the synthetic-lesion benchmark; prints the summary table. Options: --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from TotalFMLib.training.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
