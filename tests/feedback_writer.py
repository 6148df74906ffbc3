"""Writes judgements one by one into a feedback database and prints each committed row id
(flushed), so a test can kill it mid-run and check that every printed row is there.

    python tests/feedback_writer.py DB COUNT TAG
"""

import sys

from jaxbert.feedback import FeedbackStore, Judgement


def judgement(tag: str, i: int) -> Judgement:
    if i % 2:
        return Judgement(
            session=tag,
            model_source="writer",
            model_digest="0" * 16,
            task="similarity",
            sentence1=f"{tag} sentence {i}",
            sentence2=f"{tag} other {i}",
            similarity=0.5,
            verdict_score=float(i % 6),
        )
    return Judgement(
        session=tag,
        model_source="writer",
        model_digest="0" * 16,
        task="nli",
        sentence1=f"{tag} sentence {i}",
        sentence2=f"{tag} other {i}",
        predicted="neutral",
        probabilities={"entailment": 0.2, "neutral": 0.5, "contradiction": 0.3},
        similarity=0.5,
        verdict_label=("entailment", "neutral", "contradiction")[i % 3],
        comment=f"row {i}",
    )


def main(path: str, count: int, tag: str) -> None:
    store = FeedbackStore(path)
    for i in range(count):
        row = store.add(judgement(tag, i))
        print(row, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
