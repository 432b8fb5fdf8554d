"""Collections from ir_datasets ids, BEIR folders and files; random access and clear errors."""

from __future__ import annotations

import json

import pytest

from rankdistill.data.collection import load_collection
from rankdistill.data.corpus import MissingDocumentError
from rankdistill.data.formats import fix_msmarco_encoding
from rankdistill.errors import InputFormatError, RankdistillError


def test_tsv_and_jsonl_files(tmp_path):
    (tmp_path / "q.tsv").write_text("1\twhat is bm25\n2\tcross encoders\n")
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"_id": "a", "title": "BM25", "text": "a ranking function"}) + "\n"
        + json.dumps({"_id": "b", "title": "", "text": "an encoder"}) + "\n"
    )
    (tmp_path / "r.txt").write_text("1 0 a 1\n")
    coll = load_collection(queries=tmp_path / "q.tsv", corpus=tmp_path / "c.jsonl", qrels=tmp_path / "r.txt")
    assert coll.queries == {"1": "what is bm25", "2": "cross encoders"}
    assert coll.texts(["b", "a"]) == {"b": "an encoder", "a": "BM25 a ranking function"}
    assert len(coll.corpus) == 2 and list(coll.corpus) == [("a", "BM25 a ranking function"), ("b", "an encoder")]
    with pytest.raises(MissingDocumentError, match="'zz'"):
        coll.texts(["a", "zz"])
    assert coll.texts(["a", "zz"], strict=False) == {"a": "BM25 a ranking function"}


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("c.tsv", "a\tfine\nno tab here\n", ":2: expected 'id<TAB>text'"),
        ("c.jsonl", '{"_id": "a", "text": "x"}\n{broken\n', ":2: invalid JSON"),
        ("c.jsonl", '{"text": "x"}\n', ":1: no id field"),
        ("c.tsv", "a\tone\na\ttwo\n", ":2: document 'a' repeats line 1"),
    ],
)
def test_bad_corpus_lines_name_file_and_line(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputFormatError) as info:
        load_collection(corpus=path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_files_and_unknown_specs(tmp_path):
    with pytest.raises(RankdistillError, match="no such"):
        load_collection(queries=tmp_path / "nope.tsv")
    with pytest.raises(RankdistillError, match="irds:"):
        load_collection("not-a-folder-or-id")
    with pytest.raises(RankdistillError, match="name a collection"):
        load_collection()


def test_fix_encoding_matches_ir_datasets():
    # raw MS MARCO holds UTF-8 bytes decoded as Latin-1 (shown as "â€™" by cp1252 viewers)
    assert fix_msmarco_encoding("don\xe2\x80\x99t caf\xc3\xa9 25\xc2\xb0C") == "don’t café 25°C"
    assert fix_msmarco_encoding("plain ascii") == "plain ascii"


def test_fix_encoding_on_file_corpus(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("1\tit\xe2\x80\x99s\n2\tcaf\xc3\xa9\n", encoding="utf-8")
    assert load_collection(corpus=path).texts(["1"])["1"] == "it\xe2\x80\x99s"
    assert load_collection(corpus=path, fix_encoding=True).texts(["1", "2"]) == {"1": "it’s", "2": "café"}


def test_beir_folders(shared_data):
    cisi = load_collection(shared_data / "cisi")
    assert (len(cisi.queries), len(cisi.corpus), sum(map(len, cisi.qrels.values()))) == (76, 1460, 3114)
    cacm = load_collection(shared_data / "cacm")
    assert (len(cacm.queries), len(cacm.corpus), sum(map(len, cacm.qrels.values()))) == (52, 3204, 796)
    # CACM docs without an abstract still have their title
    assert all(text for text in cacm.texts(["CACM-0001", "CACM-3204"]).values())


def test_noveleval_csv_quoted_tsv(shared_data):
    coll = load_collection(shared_data / "noveleval")
    assert (len(coll.queries), len(coll.corpus)) == (21, 420)
    text = coll.texts(["14-17"])["14-17"]
    assert "\t" in text and not text.startswith('"')


def test_dl20_folder_and_irds_agree(dl20, irds_home):
    files = load_collection(dl20)
    irds = load_collection("irds:msmarco-passage/trec-dl-2020/judged")
    assert files.queries == irds.queries and len(files.queries) == 54
    assert files.qrels == irds.qrels
    ids = [d for d, _ in irds.scoreddocs["1030303"][:20]]
    assert files.texts(ids) == irds.texts(ids)
    assert sum(map(len, irds.scoreddocs.values())) == 5400


def test_irds_cranfield_and_vaswani(irds_home):
    cran = load_collection("irds:cranfield")
    assert len(cran.queries) == 225 and len(cran.corpus) == 1400
    vas = load_collection("irds:vaswani")
    assert len(vas.queries) == 93 and "1" in vas.texts(["1"])


def test_unknown_irds_id_says_how_to_work_offline(irds_home):
    with pytest.raises(RankdistillError, match="IR_DATASETS_HOME"):
        load_collection("irds:no-such-dataset/at-all")
