"""CSV/JSON export of real score rows (MiniLM-scored): fixed columns, round trip, atomic writes."""
import csv
import dataclasses
import json

import pytest

from minilm_encoder import cached_encode, case_embeddings
from TotalFMLib.errors import InputError
from TotalFMLib.outputs.export import read_csv, write_csv, write_json
from TotalFMLib.results import SCORE_COLUMNS
from TotalFMLib.zeroshot.scoring import score_case


@pytest.fixture(scope="module")
def rows():
    out = score_case(case_embeddings(), cached_encode, organs=["kidneys", "liver"],
                     findings=["stone", "hepatomegaly", "renal cyst"], case_id="case 1, \"quoted\"",
                     model_id="minilm-test", model_checksum="0" * 64)
    assert any(r.flagged for r in out) and not all(r.flagged for r in out)
    return out


def test_csv_round_trip(rows, tmp_path):
    path = write_csv(rows, tmp_path / "scores.csv")
    back = read_csv(path)
    assert len(back) == len(rows)
    for a, b in zip(rows, back):
        for column in SCORE_COLUMNS:
            x, y = getattr(a, column), getattr(b, column)
            if isinstance(x, float):
                assert y == pytest.approx(x, rel=1e-5, abs=1e-9), column
            else:
                assert y == x and type(y) is type(x), column


def test_csv_text_columns_booleans_and_precision(rows, tmp_path):
    marks = ["yes" if i % 2 else "" for i in range(len(rows))]
    path = write_csv(rows, tmp_path / "scores.csv", extra_columns={"reviewer": marks, "agree": [True] * len(rows)})
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == [*SCORE_COLUMNS, "reviewer", "agree"]
    flagged = SCORE_COLUMNS.index("flagged")
    assert {r[flagged] for r in table[1:]} == {"true", "false"}
    assert [r[-2] for r in table[1:]] == marks and {r[-1] for r in table[1:]} == {"true"}
    score = SCORE_COLUMNS.index("score")
    for r in table[1:]:
        digits = r[score].split("e")[0].replace("-", "").replace(".", "").lstrip("0")
        assert 0 < len(digits) <= 6
    assert len(read_csv(path)) == len(rows)  # extra columns are ignored on reading


def test_json(rows, tmp_path):
    path = write_json(rows, tmp_path / "scores.json", meta={"model_id": "minilm-test", "organs": 3})
    data = json.loads(path.read_text())
    assert data["columns"] == list(SCORE_COLUMNS) and data["meta"]["organs"] == 3
    assert len(data["rows"]) == len(rows)
    first = data["rows"][0]
    assert list(first) == list(SCORE_COLUMNS)
    assert first["score"] == rows[0].score and first["flagged"] is rows[0].flagged
    assert first["label_id"] == rows[0].label_id


def _bad_rows(rows):
    broken = dataclasses.replace(rows[2], score=object())
    return rows[:2] + [broken] + rows[3:]


@pytest.mark.parametrize("writer", [write_csv, write_json])
def test_failed_write_leaves_no_file(rows, tmp_path, writer):
    target = tmp_path / "out" / "scores.file"
    target.parent.mkdir()
    with pytest.raises(InputError, match="row 3: score"):
        writer(_bad_rows(rows), target)
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("writer", [write_csv, write_json])
def test_failed_write_keeps_the_existing_file(rows, tmp_path, writer):
    target = tmp_path / "scores.file"
    writer(rows[:1], target)
    before = target.read_bytes()
    with pytest.raises(InputError):
        writer(_bad_rows(rows), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scores.file"]


def test_bad_extra_columns_and_bad_csv_files(rows, tmp_path):
    with pytest.raises(InputError, match="values for"):
        write_csv(rows, tmp_path / "a.csv", extra_columns={"reviewer": ["x"]})
    with pytest.raises(InputError, match="fixed column"):
        write_csv(rows, tmp_path / "a.csv", extra_columns={"score": [1] * len(rows)})
    assert not (tmp_path / "a.csv").exists()
    with pytest.raises(InputError, match="not found"):
        read_csv(tmp_path / "missing.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing column"):
        read_csv(other)
    good = write_csv(rows, tmp_path / "good.csv")
    lines = good.read_text().splitlines()
    lines[2] = lines[2].replace(",true,", ",maybe,").replace(",false,", ",maybe,")
    good.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 3") as e:
        read_csv(good)
    assert str(good) in str(e.value)
