"""The one bounded reader of text lines and JSON (`files.reading`): a FIFO refused at once, a
line or a file over its bound refused after reading the bound, deep JSON refused before it is
parsed, every error one line naming the file and quoting a bounded excerpt."""

from __future__ import annotations

import io
import json
import time

import pytest
from conftest import fifo, takes_under

from cam_cli.errors import InputFileError
from cam_cli.files.reading import (
    EXCERPT,
    MAX_JSON_DEPTH,
    excerpt,
    json_depth,
    json_lines,
    loads,
    open_regular,
    read_bytes,
    read_json,
    text_lines,
)


def test_a_fifo_a_folder_and_a_missing_file_are_refused_by_name_at_once(tmp_path):
    with fifo(tmp_path / "pipe") as pipe:
        started = time.monotonic()
        with pytest.raises(InputFileError, match=r"pipe: not a regular file \(a FIFO\)$"):
            open_regular(pipe)
        with pytest.raises(InputFileError, match=r"pipe: not a regular file \(a FIFO\)$"):
            list(text_lines(pipe))
        with pytest.raises(InputFileError, match=r"pipe: not a regular file \(a FIFO\)$"):
            read_json(pipe)
        takes_under(5, started)
    with pytest.raises(InputFileError, match=r"not a regular file \(a directory\)$"):
        open_regular(tmp_path)
    with pytest.raises(InputFileError, match=r"nothing: cannot read \(No such file"):
        open_regular(tmp_path / "nothing")


def test_lines_without_their_newline_crlf_kept_for_the_caller_and_a_bom_dropped(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffa b\r\n\nc\n\u00e9".encode())
    assert list(text_lines(path)) == [(1, "a b\r"), (2, ""), (3, "c"), (4, "\u00e9")]


def test_a_long_line_is_refused_after_its_bound_with_a_short_excerpt(tmp_path):
    path = tmp_path / "image_ids.txt"
    path.write_bytes(b"val/a.JPEG\n" + b"x" * 3_000_000 + b"\nval/b.JPEG\n")
    with pytest.raises(InputFileError) as refused:
        list(text_lines(path, max_line=1 << 20))
    message = str(refused.value)
    assert message.startswith(f"{path}:2: a line longer than 1048576 bytes (it starts 'xxx")
    assert len(message) < len(str(path)) + 150  # the excerpt, never the line
    # a line of exactly the bound (with its newline) is taken
    path.write_bytes(b"y" * 100 + b"\n")
    assert list(text_lines(path, max_line=100)) == [(1, "y" * 100)]


def test_a_file_over_its_bound_is_refused(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"abc\n" * 100)
    with pytest.raises(InputFileError, match="more than the 200 bytes"):
        list(text_lines(path, max_bytes=200))
    with pytest.raises(InputFileError, match="400 bytes; more than the 200"):
        read_bytes(path, max_bytes=200)


def test_text_that_is_not_utf8_names_the_file_the_line_and_the_byte(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("n01\tgoldfish\nn02\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(InputFileError) as refused:
        list(text_lines(path))
    assert str(refused.value) == (
        f"{path}:2: not UTF-8 text (byte 0xe9 at column 8); save it as UTF-8"
    )


def test_json_nested_deeper_than_the_bound_is_refused_without_recursion(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    with pytest.raises(InputFileError, match=r"^r.json: JSON nested deeper than 100 levels"):
        loads(deep, "r.json")
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' * 5000 + "1" + "}" * 5000)
    with pytest.raises(InputFileError, match="nested deeper"):
        read_json(path)
    # brackets inside strings are not nesting; the exact depth counts
    assert json_depth(json.dumps({"x": "[[[[" * 100}).encode()) <= 1
    assert json_depth(b"[" * 150 + b"]" * 150) == 150
    shallow = json.dumps([[1, [2]]] * 200)  # 400+ brackets, 3 deep
    assert loads(shallow, "ok") == [[1, [2]]] * 200
    assert loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "edge") is not None


def test_json_constants_and_garbage_are_refused_naming_where():
    for text in ('{"t": NaN}', '{"t": Infinity}', "[-Infinity]"):
        with pytest.raises(InputFileError, match=r"^f.json:3: not JSON \(.*is not JSON"):
            loads(text, "f.json:3")
    with pytest.raises(InputFileError, match=r"^f:1: not JSON \(.*\); expected a report$"):
        loads("{oops", "f:1", expected="a report")


def test_json_lines_from_a_file_and_from_streams(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n')
    assert list(json_lines(path)) == [(1, {"a": 1}), (3, [2])]
    assert list(json_lines(io.BytesIO(b'{"b": 2}\n'), "<stdin>")) == [(1, {"b": 2})]
    assert list(json_lines(io.StringIO('{"c": 3}\n'), "<stream>")) == [(1, {"c": 3})]
    with pytest.raises(InputFileError, match=r"^<stream>:1: a line longer than 10 bytes"):
        list(json_lines(io.StringIO('{"c": "' + "z" * 50 + '"}\n'), "<stream>", max_line=10))


def test_an_excerpt_is_bounded_whatever_it_quotes():
    assert excerpt("short") == "'short'"
    long = excerpt("a" * 10_000)
    assert long == repr("a" * EXCERPT) + "..."
    assert excerpt(b"\xff" * 1000).startswith("'\\\\xff")
