"""BERT WordPiece tokenizer (uncased by default) around Hugging Face `tokenizers`.

The special-token ids are looked up from the vocabulary by their strings, never assumed:
a vocabulary trained here puts [PAD] [UNK] [CLS] [SEP] [MASK] at 0..4, while Google's
bert-base-uncased vocab has them at 0, 100, 101, 102, 103.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"


def _bert_pipeline(tokenizer: tokenizers.Tokenizer, lowercase: bool) -> None:
    """Set BERT's normalizer, pre-tokenizer and decoder on `tokenizer` (in place)."""
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")


def _set_post_processor(tokenizer: tokenizers.Tokenizer) -> None:
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )


_INSIDE_WORD = re.compile(r"(?<=[^ ])[^ ]+")  # a word's characters after its first


def continuation_pieces(tokenizer: tokenizers.Tokenizer, texts: Iterable[str]) -> list[str]:
    """ "##c" for every character c that follows another inside a word of `texts` (as the
    tokenizer's normalizer and pre-tokenizer cut them), in code-point order.

    The same set as pre-tokenizing every text, in about half the time: the pre-tokenizer
    splits at each whitespace or punctuation character whatever its neighbours, so each new
    character is probed once and the texts are then cut with str.translate and a regex.
    """
    separators: dict[int, str] = {}  # code point -> " " for the characters words end at
    seen: set[str] = set()
    inner: set[str] = set()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text)
        for char in set(normalized) - seen:
            seen.add(char)
            probe = f"a{char}a"
            if [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(probe)] != [probe]:
                separators[ord(char)] = " "
        inner.update("".join(_INSIDE_WORD.findall(normalized.translate(separators))))
    return ["##" + char for char in sorted(inner)]


class BertTokenizer:
    """A `tokenizers.Tokenizer` with BERT's special tokens, batch encoding to int32 arrays."""

    def __init__(self, tokenizer: tokenizers.Tokenizer):
        missing = [tok for tok in SPECIAL_TOKENS if tokenizer.token_to_id(tok) is None]
        if missing:
            raise ValueError(f"Tokenizer vocabulary lacks the special tokens {missing}.")
        # A tokenizer.json saved by other tools may carry fixed padding / truncation (the
        # all-MiniLM-L6-v2 one pads and cuts at 128); ours pad and truncate explicitly.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._is_subword: np.ndarray | None = None

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 30522,
        lowercase: bool = True,
        min_frequency: int = 2,
    ) -> BertTokenizer:
        """Train a WordPiece vocabulary on `texts`; the five special tokens get ids 0..4.

        The same texts give the same vocabulary, token for token and id for id. Hugging Face's
        trainer alone does not: it numbers the continuation pieces ("##e", "##n", ...) in the
        order it walks a hash map of words, which Rust seeds at random in every process, and
        breaks ties between equally frequent merges by those numbers; two runs on one corpus
        gave vocabularies whose ids differed from id 519 on. Here the continuation pieces are
        numbered first, in code-point order, so every id the trainer hands out is fixed.
        """
        texts = list(texts)  # two passes: the continuation pieces, then the trainer
        tokenizer = tokenizers.Tokenizer(models.WordPiece(unk_token=UNK))
        _bert_pipeline(tokenizer, lowercase)
        continuation = continuation_pieces(tokenizer, texts)
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            # The trainer numbers "special tokens" first, in the order given; the pieces are
            # ordinary tokens again in the tokenizer rebuilt below.
            special_tokens=list(SPECIAL_TOKENS) + continuation,
            continuing_subword_prefix="##",
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls._from_token_ids(tokenizer.get_vocab(with_added_tokens=True), lowercase)

    @classmethod
    def from_vocab(cls, vocab_file: str | os.PathLike, lowercase: bool = True) -> BertTokenizer:
        """Build from a Google-style vocab.txt (one token per line, line number = id)."""
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(f"Vocabulary file not found: {str(path)!r}")
        vocab: dict[str, int] = {}
        # utf-8-sig: a byte-order mark (Windows editors) would otherwise be part of "[PAD]".
        with open(path, encoding="utf-8-sig") as f:
            for i, line in enumerate(f):
                token = line.rstrip("\n")
                if not token:  # an empty token would shift the ids of every token after it
                    raise ValueError(f"{str(path)!r}: line {i + 1} is empty; one token per line.")
                if token in vocab:  # two ids for one token: save() could not write it back
                    raise ValueError(
                        f"{str(path)!r}: token {token!r} is on line {vocab[token] + 1} and on "
                        f"line {i + 1}; each token must appear once (its line number is its id)."
                    )
                vocab[token] = i
        return cls._from_token_ids(vocab, lowercase)

    @classmethod
    def _from_token_ids(cls, vocab: dict[str, int], lowercase: bool) -> BertTokenizer:
        tokenizer = tokenizers.Tokenizer(
            models.WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=100)
        )
        _bert_pipeline(tokenizer, lowercase)
        if all(tokenizer.token_to_id(tok) is not None for tok in SPECIAL_TOKENS):
            # As in bert-base-uncased's tokenizer.json: "[SEP]" in a text is the token itself,
            # and decode(skip_special_tokens=True) drops them. Their ids are already in vocab.
            tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
            _set_post_processor(tokenizer)
        return cls(tokenizer)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BertTokenizer:
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"No tokenizer at {str(path)!r}: expected a {TOKENIZER_FILE} written by "
                "BertTokenizer.save (or build one with BertTokenizer.from_vocab / .train)."
            )
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    def save(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json (the full pipeline) and vocab.txt (tokens in id order)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(directory / TOKENIZER_FILE))
        with open(directory / VOCAB_FILE, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in self.id_to_token_list())

    def to_json_str(self) -> str:
        return self._tokenizer.to_str()

    @classmethod
    def from_json_str(cls, s: str) -> BertTokenizer:
        return cls(tokenizers.Tokenizer.from_str(s))

    # ---- vocabulary ---------------------------------------------------------------------

    @property
    def backend(self) -> tokenizers.Tokenizer:
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token_list(self) -> list[str]:
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        tokens = [""] * self.vocab_size
        for token, i in vocab.items():
            tokens[i] = token
        return tokens

    @property
    def pad_id(self) -> int:
        return self._tokenizer.token_to_id(PAD)

    @property
    def unk_id(self) -> int:
        return self._tokenizer.token_to_id(UNK)

    @property
    def cls_id(self) -> int:
        return self._tokenizer.token_to_id(CLS)

    @property
    def sep_id(self) -> int:
        return self._tokenizer.token_to_id(SEP)

    @property
    def mask_id(self) -> int:
        return self._tokenizer.token_to_id(MASK)

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self._tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS)

    @property
    def is_subword(self) -> np.ndarray:
        """bool [vocab_size]: True for '##' continuation pieces (for whole-word masking)."""
        if self._is_subword is None:
            self._is_subword = np.array(
                [tok.startswith("##") for tok in self.id_to_token_list()], dtype=bool
            )
        return self._is_subword

    # ---- encoding -----------------------------------------------------------------------

    def encode_batch(
        self,
        texts: list[str],
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> list[np.ndarray]:
        """Token ids (int32 [len_i]) per text; with specials: [CLS] ... [SEP].

        Truncation to `max_length` keeps the final [SEP].
        """
        encodings = self._tokenizer.encode_batch_fast(
            list(texts), add_special_tokens=add_special_tokens
        )
        out = [np.asarray(enc.ids, dtype=np.int32) for enc in encodings]
        if max_length is not None:
            if add_special_tokens and max_length < 2:
                raise ValueError(f"max_length={max_length} cannot hold [CLS] and [SEP].")
            sep = self.sep_id
            for i, ids in enumerate(out):
                if len(ids) > max_length:
                    if add_special_tokens:
                        ids = np.concatenate([ids[: max_length - 1], [sep]]).astype(np.int32)
                    else:
                        ids = ids[:max_length]
                    out[i] = ids
        return out

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(
            [int(i) for i in np.asarray(ids).reshape(-1)],
            skip_special_tokens=skip_special_tokens,
        )

    def fingerprint(self) -> str:
        """Stable short hash of the serialized tokenizer (for cache keys)."""
        return hashlib.sha256(self.to_json_str().encode("utf-8")).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"BertTokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint()})"
