import os

# Fail at once instead of retrying the unreachable Hugging Face hub for ~23 s.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import json  # noqa: E402
import random  # noqa: E402

import pytest  # noqa: E402

_WORDS = (
    "the a cat dog bird river city music science history people water light small large old "
    "new quick slow red green blue walks runs sings builds reads writes finds sees under over "
    "near with from about into king queen house garden machine language"
).split()


def synthetic_documents(num_documents: int = 40, seed: int = 0) -> list[str]:
    """Documents of 1..12 sentences; every sentence carries a unique number."""
    rng = random.Random(seed)
    documents, serial = [], 0
    for d in range(num_documents):
        sentences = []
        for _ in range(1 + (d * 7) % 12):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
            sentences.append(f"{' '.join(words).capitalize()} item {serial}.")
            serial += 1
        # Two sentences per line, so documents exercise the sentence splitter too.
        lines = [" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2)]
        documents.append("\n".join(lines))
    return documents


@pytest.fixture
def tiny_corpus_dir(tmp_path):
    """A directory with the same synthetic documents as corpus.txt (blank-line separated)
    and corpus.jsonl ({"id", "text"} per line)."""
    documents = synthetic_documents()
    (tmp_path / "corpus.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    with open(tmp_path / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(documents):
            f.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return tmp_path


def tiny_sentence_model(sentences, tokenizer_vocab: int, model_vocab: int, max_len: int):
    """A SentenceModel with random weights (BERT tiny, no dropout, an NLI head) and a WordPiece
    vocabulary trained on `sentences`: the serving tests' model."""
    import jax
    import jax.numpy as jnp

    from jaxbert.data.tokenizer import BertTokenizer
    from jaxbert.model import BertConfig
    from jaxbert.sbert import SentenceBert
    from jaxbert.serve import SentenceModel

    tokenizer = BertTokenizer.train(list(sentences) * 20, vocab_size=tokenizer_vocab)
    config = BertConfig.from_size(
        "tiny",
        vocab_size=model_vocab,
        max_position_embeddings=64,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    module = SentenceBert(config, num_labels=3)
    ids = jnp.zeros((1, 8), jnp.int32)
    params = module.init(jax.random.key(0), ids, jnp.ones_like(ids))["params"]
    return SentenceModel(
        model_config=config,
        params=params,
        tokenizer=tokenizer,
        label_names=("entailment", "neutral", "contradiction"),
        max_len=max_len,
        has_classifier=True,
    )
