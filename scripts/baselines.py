"""Non-neural baselines on the same data, to keep the neural numbers honest.

    python scripts/baselines.py            # needs scikit-learn (the dev extra)

NLI: bag-of-words logistic regression over [premise words; hypothesis words; shared words],
trained on the SNLI train subset, scored on SNLI and MultiNLI dev. STS: TF-IDF cosine
(vectoriser fitted on STS-B train sentences), Spearman on STS-B dev and SICK trial.
"""

import json

import numpy as np
from absl import flags
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from jaxbert import cli, evaluate
from jaxbert.data import nli

DATA_ROOT = flags.DEFINE_string("data_root", "", "folder of the local datasets (../shared/data)")


def _pair_features(vectorizer, dataset):
    a = vectorizer.transform(dataset.sentence1)
    b = vectorizer.transform(dataset.sentence2)
    return sparse.hstack([a, b, a.multiply(b)]).tocsr()


def main(argv):
    del argv
    read = lambda name: nli.read_pairs(nli.resolve(name, root=DATA_ROOT.value or None))  # noqa: E731
    train = read("snli_train_subset")
    vectorizer = CountVectorizer(binary=True, min_df=2).fit(train.sentence1 + train.sentence2)
    classifier = LogisticRegression(max_iter=2000, C=0.5)
    classifier.fit(_pair_features(vectorizer, train), train.labels)
    results = {}
    for name in ("snli_dev", "mnli_dev_matched", "mnli_dev_mismatched"):
        dev = read(name)
        to_train = np.array([train.label_names.index(n) for n in dev.label_names])
        predicted = classifier.predict(_pair_features(vectorizer, dev))
        results[f"bow_logreg_{name}_accuracy"] = float(np.mean(predicted == to_train[dev.labels]))
    sts_train = read("stsb_train")
    tfidf = TfidfVectorizer().fit(sts_train.sentence1 + sts_train.sentence2)
    for name in ("stsb_dev", "sick_trial_sts"):
        dev = read(name)
        u, v = tfidf.transform(dev.sentence1), tfidf.transform(dev.sentence2)
        cosine = np.asarray(u.multiply(v).sum(axis=1)).ravel()  # rows are L2-normalised
        results[f"tfidf_cosine_{name}_spearman"] = 100 * evaluate.spearman(cosine, dev.labels)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli.run(main)
