"""Sentence splitting for NSP pretraining: rule-based, no model, no download.

BERT's NSP task needs documents cut into sentences. A newline always ends one; . ! ? end one
when followed by whitespace and an uppercase letter, a digit or an opening quote or bracket,
except after common abbreviations, initials and dotted acronyms.
"""

from __future__ import annotations

import re

# Words that end with a period without ending a sentence (compared lower-cased, without the
# period). Single letters (initials) and dotted acronyms ("u.s") are handled separately.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft rev hon gen col lt sgt capt cmdr adm gov sen rep pres
    vs etc cf al fig figs no nos vol vols pp ed eds inc ltd co corp bros dept univ assn approx
    ca est jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e viz op ch sec art""".split()
)
# Sentence-final punctuation, optional closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+")
_ACRONYM = re.compile(r"(?:[a-z]\.)+[a-z]")
_OPENERS = "\"'“‘([¿¡"


def _is_abbreviation(line: str, start: int, period: int) -> bool:
    """Whether the word ending at `line[period]` (a single '.') is an abbreviation or initial."""
    word_start = max(line.rfind(" ", start, period), line.rfind("\t", start, period), start - 1) + 1
    word = line[word_start:period].lstrip(_OPENERS).lower()
    return (
        word in _ABBREVIATIONS
        or (len(word) == 1 and word.isalpha())
        or _ACRONYM.fullmatch(word) is not None
    )


def split_sentences(text: str) -> list[str]:
    """Split text into sentences: at newlines, and after . ! ? followed by an uppercase letter,
    a digit or an opening quote/bracket, unless the period ends a known abbreviation
    ("Dr.", "e.g.", "U.S.") or an initial ("J. R. R. Tolkien")."""
    sentences = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        start = 0
        for match in _BOUNDARY.finditer(line):
            end = match.end()
            following = line[end]  # the pattern ends in whitespace and the line is stripped
            if not (following.isupper() or following.isdigit() or following in _OPENERS):
                continue
            punctuation = match.group().rstrip()
            if punctuation.rstrip("\"'”’)]") == "." and _is_abbreviation(
                line, start, match.start()
            ):
                continue
            sentences.append(line[start:end].rstrip())
            start = end
        if start < len(line):
            sentences.append(line[start:])
    return sentences
