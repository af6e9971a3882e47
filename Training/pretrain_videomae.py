"""VideoMAE pre-training of the image encoder. Options: --help; guide: TotalFMLib/training/entry.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from TotalFMLib import runtime  # noqa: E402

if __name__ == "__main__":
    runtime.setup()  # before torch loads (OpenMP waits passively); threads = physical cores
    from TotalFMLib.training.entry import main

    sys.exit(main("videomae"))
