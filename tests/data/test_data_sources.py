"""Reading every kind of source: text modes, JSON Lines, JSON, CSV, parquet, save_to_disk folders, the hub
offline, globs, mixtures; bad input gives a UserError that names the file and line."""

import json
import time

import pytest

from core.config import DataConfig, FilterConfig, SourceConfig
from core.data import Documents, iter_documents, load_records
from core.data.sources import ReadCounts, iter_texts
from core.errors import UserError


def texts(spec, **kw):
    return list(iter_texts(str(spec), **kw))


def test_txt_modes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one\ntwo\n\n\nthree\n\nfour\n")
    assert texts(f, txt_mode="file") == ["one\ntwo\n\n\nthree\n\nfour\n"]
    assert texts(f, txt_mode="block") == ["one\ntwo", "three", "four"]
    assert texts(f, txt_mode="line") == ["one", "two", "three", "four"]


def test_jsonl_json_csv_parquet_give_the_same_documents(tmp_path):
    rows = [{"id": i, "body": f"document number {i}, with \"quotes\"\nand a newline"} for i in range(5)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    (tmp_path / "e.json").write_text(json.dumps(rows))
    import csv

    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["id", "body"])
        w.writeheader()
        w.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    want = [r["body"] for r in rows]
    for name in ("d.jsonl", "d.json", "e.json", "d.csv", "d.parquet"):
        assert texts(tmp_path / name, text_field="body") == want, name


def test_missing_text_field_lists_the_fields(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"title": "a", "body": "b"}\n')
    with pytest.raises(UserError, match=r"d.jsonl row 1: no field 'text'; the rows have: title, body"):
        texts(tmp_path / "d.jsonl")


def test_a_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "fine"}\n[1, 2]\n')
    with pytest.raises(UserError, match=r"d.jsonl:2: expected a JSON object per line, got list"):
        texts(f)
    f.write_text('{"text": "fine"}\n\n{"text": oops}\n')
    with pytest.raises(UserError, match=r"d.jsonl:3: not valid JSON"):
        texts(f)


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"caf\xe9 ok\nfine line\n\xff\xfe twice\n")
    counts = ReadCounts()
    out = texts(f, txt_mode="line", counts=counts)
    assert out == ["caf\ufffd ok", "fine line", "\ufffd\ufffd twice"]
    assert counts.bad_utf8 == 3 and counts.bad_utf8_files == {str(f)}


def test_globs_folders_and_missing_paths(tmp_path):
    for i in range(3):
        (tmp_path / f"part{i}.txt").write_text(f"text {i}")
    (tmp_path / "notes.md").write_text("not matched by the glob")
    assert texts(tmp_path / "part*.txt") == ["text 0", "text 1", "text 2"]
    assert len(texts(tmp_path)) == 4
    with pytest.raises(UserError, match="no files match"):
        texts(tmp_path / "nope*.txt")
    with pytest.raises(UserError, match="no such file or folder"):
        texts(tmp_path / "missing.jsonl")


def test_a_file_or_folder_named_with_glob_characters_is_itself(tmp_path):
    (tmp_path / "stories [v2].txt").write_text("the bracketed story")
    (tmp_path / "stories v.txt").write_text("what the pattern [v2] would match")
    assert texts(tmp_path / "stories [v2].txt") == ["the bracketed story"]
    (tmp_path / "set [a]*").mkdir()
    (tmp_path / "set [a]*" / "x.txt").write_text("inside")
    assert texts(tmp_path / "set [a]*") == ["inside"]
    assert texts(tmp_path / "stories [v]*.txt") == ["what the pattern [v2] would match"]  # not a file: a glob


def test_save_to_disk_folder_goes_through_datasets(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"content": ["alpha beta", "gamma delta", "epsilon"], "label": [0, 1, 0]})
    ds.save_to_disk(str(tmp_path / "saved"))
    assert texts(tmp_path / "saved", text_field="content") == ["alpha beta", "gamma delta", "epsilon"]
    assert texts(tmp_path / "saved", text_field="content", streaming=True) == ["alpha beta", "gamma delta", "epsilon"]
    with pytest.raises(UserError, match="no field 'text'; the rows have: content, label"):
        texts(tmp_path / "saved")
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([2])})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert texts(tmp_path / "dict", text_field="content", split="test") == ["epsilon"]
    with pytest.raises(UserError, match="no split 'validation'; splits: train, test"):
        texts(tmp_path / "dict", text_field="content", split="validation")


def test_hub_offline_fails_fast_naming_the_dataset(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t = time.time()
    with pytest.raises(UserError, match=r"hf:nobody/no-such-corpus-xyz: cannot load.*offline.*save_to_disk"):
        texts("hf:nobody/no-such-corpus-xyz")
    assert time.time() - t < 15


def test_embedded_names(tmp_path):
    with pytest.raises(UserError, match="for finetuning and evaluation"):
        texts("embedded:tinyworld-classify")
    assert len(texts("embedded:tinyworld", synthetic_mb=0.01)) > 10


def test_limits_and_filters_in_documents(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text("\n".join(f"line {i:03d}" for i in range(100)))
    data = DataConfig(source=str(f), txt_mode="line", max_docs=10)
    assert list(iter_documents(data)) == [f"line {i:03d}" for i in range(10)]
    data = DataConfig(source=str(f), txt_mode="line", max_bytes=30)  # 8 bytes per line
    assert len(list(iter_documents(data))) == 3


def test_mixture_follows_the_weights_and_reports_the_realised_shares(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join("a" * 100 for _ in range(300)))
    (tmp_path / "b.txt").write_text("\n".join("b" * 50 for _ in range(300)))
    data = DataConfig(mixture=[SourceConfig(source=str(tmp_path / "a.txt"), weight=3),
                               SourceConfig(source=str(tmp_path / "b.txt"), weight=1)],
                      txt_mode="line", filters=FilterConfig(dedup_exact=False))
    docs = Documents(data)
    out = list(docs)
    rep = docs.source_report()
    a, b = rep["sources"]
    assert a["docs"] == 300 and rep["exhausted"] == str(tmp_path / "a.txt")  # a runs out first: 30,000 chars
    assert abs(a["share_bytes"] - 0.75) < 0.01 and abs(b["share_bytes"] - 0.25) < 0.01
    assert a["weight"] == 0.75 and len(out) == a["docs"] + b["docs"]


def test_empty_dataset_is_a_user_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="the dataset is empty"):
        list(iter_documents(DataConfig(source=str(tmp_path / "e.jsonl"))))


def test_load_records_maps_fields_labels_and_carves_splits(tmp_path):
    import csv

    with open(tmp_path / "sms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["v1", "v2"])
        for i in range(200):
            w.writerow(["spam" if i % 3 == 0 else "ham", f"message {i}"])
    parts = {s: load_records(str(tmp_path / "sms.csv"), s, text_field="v2", label_field="v1")
             for s in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == 200
    assert 10 < len(parts["test"]) < 35 and 10 < len(parts["val"]) < 35
    texts_ = [{r["text"] for r in rows} for rows in parts.values()]
    assert not (texts_[0] & texts_[1]) and not (texts_[0] & texts_[2])
    r = parts["train"][0]
    assert r["label"] in (0, 1) and r["label_name"] == ("ham", "spam")[r["label"]] and r["v1"] == r["label_name"]
    assert parts["test"] == load_records(str(tmp_path / "sms.csv"), "test", text_field="v2", label_field="v1")
    with pytest.raises(UserError, match="no field 'body'; the rows have: v1, v2"):
        load_records(str(tmp_path / "sms.csv"), text_field="body")


def test_load_records_uses_a_datasets_test_split_and_carves_val(tmp_path):
    import datasets

    train = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(100)], "label": [i % 2 for i in range(100)]})
    test = datasets.Dataset.from_dict({"text": ["x", "y"], "label": [0, 1]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    assert [r["text"] for r in load_records(str(tmp_path / "dd"), "test")] == ["x", "y"]
    tr, va = load_records(str(tmp_path / "dd"), "train"), load_records(str(tmp_path / "dd"), "val")
    assert len(tr) + len(va) == 100 and 0 < len(va) < 25


def test_load_records_embedded(tmp_path):
    rows = load_records("embedded:tinyworld-instruct", "val", limit=5)
    assert len(rows) == 5 and set(rows[0]) == {"instruction", "input", "output"}
    with pytest.raises(UserError, match="no such embedded set"):
        load_records("embedded:tinyworld-poems")
