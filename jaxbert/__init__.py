"""jaxbert: BERT pretraining and Sentence-BERT fine-tuning in JAX."""

from jaxbert.model import BertConfig
from jaxbert.serve import SentenceModel

__all__ = ["BertConfig", "SentenceModel"]
