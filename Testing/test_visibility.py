"""Lesion visibility in the crops (TotalFMLib/training/visibility.py) on the real test CT."""
from __future__ import annotations

import numpy as np
import pytest

from TotalFMLib.errors import InputError
from TotalFMLib.training.benchmark_data import BenchmarkConfig
from TotalFMLib.training.visibility import crop_change_hu, measure


def test_change_is_in_hu_and_the_largest_over_the_windows():
    before = np.zeros((3, 2, 2, 2), np.float32)
    after = before.copy()
    after[1, 0, 0, 0] = 0.1    # soft-tissue window (width 400): 40 HU
    after[2, 0, 0, 0] = 0.02   # bone window (width 1500): 30 HU on the same voxel
    after[0, 1, 1, 1] = -0.01  # lung window (width 1500): 15 HU
    change = crop_change_hu(before, after)
    assert change[0, 0, 0] == pytest.approx(40.0)
    assert change[1, 1, 1] == pytest.approx(15.0)
    assert np.count_nonzero(change) == 2


def test_an_inserted_liver_lesion_reaches_the_crop(dicom_base):
    cfg = BenchmarkConfig(crop_size=32, frames=8)
    rows = measure("hypodense lesion", "liver", cases=1, cfg=cfg, min_hu=10.0)
    assert len(rows) == 1
    row = rows[0]
    assert row.grid_voxels > 0
    assert 10.0 <= row.peak_hu <= 200.0  # the lesion's -30..-80 HU shift, blurred by the resize
    assert 0 < row.crop_voxels < 32 * 32 * 8 // 4


def test_findings_that_move_labels_and_bad_requests_are_refused():
    with pytest.raises(InputError, match="label map"):
        measure("hepatomegaly", "liver", cases=1)
    with pytest.raises(InputError, match="label map"):
        measure("pleural effusion", "lung_lower_lobe_left", cases=1)
    with pytest.raises(InputError, match="at least 1"):
        measure("hypodense lesion", "liver", cases=0)


def test_a_finding_the_organ_cannot_carry_is_refused_by_the_inserter(dicom_base):
    with pytest.raises(InputError, match="cannot insert"):
        measure("gallstones", "liver", cases=1, cfg=BenchmarkConfig(crop_size=32, frames=8))


def test_command_line_refuses_zero_cases_in_one_line(capsys, training_dir):
    import runpy

    script = training_dir / "lesion_visibility.py"
    main = runpy.run_path(str(script))["main"]
    with pytest.raises(SystemExit) as err:
        main(["--cases", "0"])
    assert err.value.code == 2
    assert "--cases must be at least 1" in capsys.readouterr().err
