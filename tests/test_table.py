import pandas as pd
import pyarrow as pa
import pytest

from tessera.errors import DataError
from tessera.table import read_table


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".feather"])
def test_reads_every_format_with_base_dir(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = tmp_path / f"t{suffix}"
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        ".parquet": lambda: frame.to_parquet(path),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".feather": lambda: frame.to_feather(path),
    }[suffix]()
    table = read_table(path)
    assert table.frame["a"].tolist() == [1, 2]
    assert table.base_dir == str(tmp_path.resolve())


def test_in_memory_tables_have_no_base_dir():
    frame = pd.DataFrame({"a": [1]}, index=[7])
    assert read_table(frame).frame.index.tolist() == [0]  # rows renumbered so errors name findable rows
    assert read_table(pa.table({"a": [1, 2]})).frame["a"].tolist() == [1, 2]
    assert read_table([{"a": 1}]).base_dir is None


def test_bad_tables_name_the_file(tmp_path):
    with pytest.raises(DataError, match="table file not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown table format '.xlsx'"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv.*the table file is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="the table has no rows"):
        read_table(tmp_path / "header.csv")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"bad\.parquet.*cannot (read|parse) as parquet"):
        read_table(tmp_path / "bad.parquet")
