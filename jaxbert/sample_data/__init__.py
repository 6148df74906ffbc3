"""Small data shipped inside the package, so the tiny configs run on a fresh machine offline.

CORPUS: every third US State of the Union address, 1790-2021 (78 addresses, public domain),
cut into 1,766 documents of about 12 sentences: JSON Lines (`text`, `president`, `year`,
`id`), gzipped, 1.2 MB (3.7 MB of text). Sources, licences and how it was built: README.md
beside this file; `scripts/make_sample_data.py` rebuilds it.
"""

import os

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sotu.jsonl.gz")
