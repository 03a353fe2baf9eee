"""Data files for virtual users: reading, every rejection with its line, and how rows are handed out."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from runner.data import (MAX_FILE_BYTES, MAX_ROWS, DataFileError, DataTable, _READERS,
                         load_table)
from runner.schemas.data import DATA_FILE_SUFFIXES, DataSpec, check_table_name

FIXTURES = Path(__file__).resolve().parent / "data"


def spec(file: str, mode: str = "sequential", per: str = "vu") -> DataSpec:
    return DataSpec(file=file, mode=mode, per=per)


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return name


def load_error(tmp_path: Path, name: str, content: str | bytes, **limits) -> DataFileError:
    write(tmp_path, name, content)
    with pytest.raises(DataFileError) as info:
        load_table("t", spec(name), tmp_path, **limits)
    return info.value


def table(rows: int, mode: str, per: str = "vu") -> DataTable:
    return DataTable(name="t", path="t.csv", columns=("n",), rows=tuple((str(i),) for i in range(rows)),
                     mode=mode, per=per)


# --- schema -------------------------------------------------------------------------------------------------------


def test_spec_defaults_and_strictness():
    data = DataSpec(file="data/users.csv")
    assert (data.mode, data.per) == ("sequential", "vu")
    for bad in ({"file": "u.csv", "mode": "shuffled"}, {"file": "u.csv", "per": "request"},
                {"file": "u.csv", "column": "x"}, {}, {"file": "u.txt"}, {"file": "users"}, {"file": " "}):
        with pytest.raises(ValidationError):
            DataSpec(**bad)
    with pytest.raises(ValidationError):
        data.mode = "random"  # frozen, like every scenario model


def test_spec_suffixes_match_the_readers():
    assert set(DATA_FILE_SUFFIXES) == set(_READERS)
    assert DataSpec(file="Users.CSV").file == "Users.CSV"


@pytest.mark.parametrize("name", ["users", "_x", "Users2", "a_b"])
def test_good_table_names(name):
    assert check_table_name(name) is None


@pytest.mark.parametrize("name", ["2users", "user-list", "users.csv", "", "a b", "é", 3])
def test_bad_table_names(name):
    assert check_table_name(name)


# --- happy paths --------------------------------------------------------------------------------------------------


def test_csv_fixture_keeps_strings_and_quoted_newlines():
    users = load_table("users", spec("data/users.csv", "unique"), FIXTURES.parent)
    assert users.columns == ("user", "password", "note")
    assert users.rows == (
        ("alice", "a-secret", "plain"),
        ("bob", "b-secret", "two\nlines"),
        ("carol, jr", "c-secret", 'say "hi"'),
        ("dave", "d-secret", ""),
    )
    assert users.path == str(FIXTURES / "users.csv")
    assert users.column_index("password") == 1 and users.column_index("nope") is None
    assert len(users) == 4
    assert users.describe() == f"users: {users.path}, 4 rows, columns user,password,note, unique per vu"


def test_jsonl_fixture_keeps_json_types_in_first_object_key_order():
    people = load_table("people", spec("users.jsonl", per="iteration"), FIXTURES)
    assert people.columns == ("user", "id", "admin", "score", "tags", "manager")
    assert people.rows[0] == ("alice", 1, True, 2.5, ["a", "b"], None)
    assert people.rows[1] == ("bob", 2, False, -1, [], {"user": "alice"})  # keys written in another order
    assert type(people.rows[1][1]) is int and type(people.rows[0][2]) is bool
    assert people.describe().endswith("3 rows, columns user,id,admin,score,tags,manager, sequential per iteration")


def test_ndjson_crlf_bom_and_header_spaces(tmp_path):
    write(tmp_path, "a.ndjson", '{"k": "v"}\r\n{"k": "w"}\r\n')
    assert load_table("a", spec("a.ndjson"), tmp_path).rows == (("v",), ("w",))
    write(tmp_path, "b.csv", "\ufeffuser, password\r\nx, y\r\n\r\n")
    b = load_table("b", spec("b.csv"), tmp_path)
    assert b.columns == ("user", "password")  # a spreadsheet's BOM and spaces around names are not part of them
    assert b.rows == (("x", " y"),)  # values are data: kept exactly
    one = load_table("c", spec(write(tmp_path, "c.csv", 'n\n""\n1\n')), tmp_path)
    assert one.rows == (("",), ("1",))
    assert one.describe().startswith("c: ") and "2 rows" in one.describe()
    single = load_table("d", spec(write(tmp_path, "d.csv", "n\n1")), tmp_path)
    assert single.describe() == f"d: {tmp_path / 'd.csv'}, 1 row, columns n, sequential per vu"


def test_relative_to_base_dir_or_absolute(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "sub/u.csv", "a\n1\n")
    assert load_table("u", spec("sub/u.csv"), tmp_path).rows == (("1",),)
    assert load_table("u", spec(str(tmp_path / "sub/u.csv")), "/nonexistent").rows == (("1",),)


# --- errors, each with the line to fix ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, line, words", [
    ("h.csv", "a,,b\n1,2,3\n", 1, "column 2 of the header has no name"),
    ("h.csv", "a,b,a\n1,2,3\n", 1, "'a' appears twice"),
    ("h.csv", "a, a\n1,2\n", 1, "'a' appears twice"),
    ("h.csv", "\na,b\n1,2\n", 1, "first line is blank"),
    ("r.csv", "a,b\n1,2\n3\n", 3, "1 field but the header has 2 columns"),
    ("r.csv", 'a,b\n1,"x\ny"\n2,"p\nq",3\n', 4, "3 fields but the header has 2 columns (a,b)"),
    ("r.csv", "a,b\n1,2\n\n3,4\n", 3, "blank line between rows"),
    ("r.csv", 'a,b\n1,2\n3,"never closed\n4,5\n', 3, "never closed"),
    ("r.csv", 'a,b\n1,"x"y\n', 2, "malformed CSV"),
    ("j.jsonl", '{"a": 1}\n{"a": \n', 2, "not valid JSON"),
    ("j.jsonl", '{"a": 1}\n{"a": NaN}\n', 2, "NaN is not valid JSON"),
    ("j.jsonl", '{"a": 1}\n{"a": 1} x\n', 2, "not valid JSON"),
    ("j.jsonl", '{"a": 1}\n\n[1, 2]\n', 2, "blank line between rows"),
    ("j.jsonl", '{"a": 1}\n[1, 2]\n', 2, "got a list"),
    ("j.jsonl", '"a"\n', 1, "got a string"),
    ("j.jsonl", '{}\n{"a": 1}\n', 1, "no keys"),
    ("j.jsonl", '{"a": 1, "b": 2}\n{"b": 3, "a": 4}\n{"a": 5}\n', 3, "missing 'b'"),
    ("j.jsonl", '{"a": 1}\n{"a": 2, "c": 3}\n', 2, "unexpected 'c'"),
    ("j.jsonl", '{"a": 1}\n' + "[" * 100_000 + "\n", 2, "nested too deeply"),
    ("u.csv", "a\n1\n2\n".encode() + b"caf\xe9\n", 4, "not UTF-8"),
    ("u.jsonl", b'{"a": 1}\r\n\xff\r\n', 2, "byte 0xff"),
])
def test_errors_name_the_line(tmp_path, name, content, line, words):
    error = load_error(tmp_path, name, content)
    assert error.line == line, error
    assert words in error.message
    assert error.path == str(tmp_path / name)
    assert str(error) == f"{tmp_path / name}:{line}: {error.message}"


@pytest.mark.parametrize("name, content, words", [
    ("e.csv", "", "empty"),
    ("e.jsonl", "\n \n", "empty"),
    ("e.csv", "a,b\n", "no data rows (only a header line)"),
    ("e.csv", "a,b\n\n\n", "no data rows"),
])
def test_files_without_rows(tmp_path, name, content, words):
    error = load_error(tmp_path, name, content)
    assert words in error.message and error.line is None


def test_missing_unreadable_and_unsupported_files(tmp_path):
    with pytest.raises(DataFileError) as info:
        load_table("t", spec("missing.csv"), tmp_path)
    assert info.value.message == "no such data file" and info.value.line is None
    assert info.value.path == str(tmp_path / "missing.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataFileError, match="directory"):
        load_table("t", spec("dir.csv"), tmp_path)
    write(tmp_path, "t.txt", "a\n1\n")

    class Unchecked:  # a spec that skipped the schema: the reader still refuses
        file, mode, per = "t.txt", "sequential", "vu"
    with pytest.raises(DataFileError, match="unsupported data file type '.txt'"):
        load_table("t", Unchecked, tmp_path)


def test_limits(tmp_path):
    assert MAX_FILE_BYTES == 256 * 1024 * 1024 and MAX_ROWS == 10_000_000
    write(tmp_path, "big.csv", "a\n" + "x\n" * 50)
    assert len(load_table("t", spec("big.csv"), tmp_path, max_bytes=102)) == 50
    error = load_error(tmp_path, "big.csv", "a\n" + "x\n" * 50, max_bytes=101)
    assert "larger than the limit of 101 bytes" in error.message and error.line is None
    assert len(load_table("t", spec("big.csv"), tmp_path, max_rows=50)) == 50
    error = load_error(tmp_path, "big.csv", "a\n" + "x\n" * 50, max_rows=49)
    assert error.line == 51 and "more than 49 rows" in error.message
    error = load_error(tmp_path, "big.jsonl", '{"a": 1}\n' * 5, max_rows=3)
    assert error.line == 4 and "more than 3 rows" in error.message


# --- handing out rows ---------------------------------------------------------------------------------------------


def test_sequential_wraps_in_order():
    cursor = table(3, "sequential").cursor()
    assert [cursor.next()[0] for _ in range(7)] == ["0", "1", "2", "0", "1", "2", "0"]
    assert cursor.used == 7 and not cursor.exhausted and cursor.remaining is None


@pytest.mark.parametrize("rows, processes", [(10, 3), (5, 2), (4, 4), (2, 5), (7, 1)])
def test_sequential_across_processes_is_round_robin_in_file_order(rows, processes):
    data = table(rows, "sequential")
    cursors = [data.cursor(k, processes) for k in range(processes)]
    taken = [int(cursors[k].next()[0]) for _ in range(4) for k in range(processes)]
    assert taken == [i % rows for i in range(4 * processes)]


def test_random_is_uniform_and_reproducible():
    data = table(10, "random")
    draws = [data.cursor(0, 1, seed=42).next() for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    first = data.cursor(1, 3, seed=7)
    again = data.cursor(1, 3, seed=7)
    sequence = [first.next() for _ in range(200)]
    assert sequence == [again.next() for _ in range(200)]
    assert sequence != [data.cursor(2, 3, seed=7).next() for _ in range(200)]  # each process its own stream
    counts = Counter(row[0] for row in sequence + [first.next() for _ in range(9800)])
    assert set(counts) == {str(i) for i in range(10)}
    assert all(800 < n < 1200 for n in counts.values())
    assert first.used == 10_000 and not first.exhausted


def test_unique_across_three_processes_uses_every_row_exactly_once():
    data = table(10, "unique")
    cursors = [data.cursor(k, 3) for k in range(3)]
    assert [c.remaining for c in cursors] == [data.share(k, 3) for k in range(3)] == [4, 3, 3]
    taken = []
    for cursor in cursors:
        while (row := cursor.next()) is not None:
            taken.append(row)
        assert cursor.exhausted and cursor.remaining == 0
        assert cursor.next() is None and cursor.next() is None  # stays exhausted
    assert sorted(taken) == sorted(data.rows) and len(taken) == 10
    assert [c.used for c in cursors] == [4, 3, 3]
    assert [row[0] for row in taken[:4]] == ["0", "3", "6", "9"]


def test_unique_with_more_processes_than_rows():
    data = table(2, "unique")
    cursors = [data.cursor(k, 4) for k in range(4)]
    assert [c.exhausted for c in cursors] == [False, False, True, True]
    assert [c.next() for c in cursors] == [("0",), ("1",), None, None]
    assert all(c.exhausted for c in cursors)


def test_cursor_arguments_and_table_fields_are_checked():
    data = table(3, "sequential")
    for index, count in ((0, 0), (3, 3), (-1, 2)):
        with pytest.raises(ValueError):
            data.cursor(index, count)
    with pytest.raises(ValueError):
        table(3, "shuffled")
    with pytest.raises(ValueError):
        table(3, "unique", per="request")


def test_pickles_for_worker_processes_and_keeps_rows_out_of_repr():
    data = load_table("people", spec("users.jsonl", "unique"), FIXTURES)
    copy = pickle.loads(pickle.dumps(data))
    assert copy == data and copy.rows == data.rows and copy.mode == "unique"
    assert [copy.cursor(0, 2).next(), copy.cursor(1, 2).next()] == list(data.rows[:2])
    assert "alice" not in repr(data) and "people" in repr(data)
    with pytest.raises(AttributeError):
        data.rows = ()  # frozen
