"""The ONNX Runtime peer of `scripts/benchmark.py encode --peer onnx`: the same sentence encoder
exported with PyTorch's ONNX exporter and run in ONNX Runtime, float32 and dynamically quantised
to int8, the way sentence-transformers' guide to faster CPU inference serves a model.

Peer requirements, not jaxbert's (`pip install -e .[peers]`): torch (CPU build), transformers,
onnx, onnxscript (torch's exporter) and onnxruntime.

The graph holds the whole sentence encoder, as sentence-transformers runs it: BERT, then mean
(or CLS / max) pooling over the real tokens and, when the model has one, L2 normalisation; its
input is token ids and the attention mask, its output the embeddings [batch, hidden].
Tokenisation is ours (the same ids reach both), and batches are sorted by length and padded to
their longest sentence, as sentence-transformers' `encode` does.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

OPSET = 18


def _encoder_module(folder: str, pooling: str, normalize: bool):
    import torch
    from transformers import AutoModel

    class SentenceEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(folder, attn_implementation="eager")

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            if pooling == "mean":  # sentence-transformers' Pooling, clamp included
                pooled = (hidden * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
            elif pooling == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = torch.where(mask > 0, hidden, torch.full_like(hidden, -1e9)).amax(1)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    return SentenceEncoder().eval()


def export_onnx(folder: str, out_dir: str, *, pooling: str = "mean", normalize: bool = False):
    """Writes `model.onnx` (float32) and `model_int8.onnx` (dynamic int8: int8 weights, uint8
    activations quantised per call, onnxruntime's `quantize_dynamic` defaults) for the
    Hugging Face folder `folder`; returns their paths."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    os.makedirs(out_dir, exist_ok=True)
    fp32 = os.path.join(out_dir, "model.onnx")
    int8 = os.path.join(out_dir, "model_int8.onnx")
    module = _encoder_module(folder, pooling, normalize)
    ids = torch.ones((2, 16), dtype=torch.int64)
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2)
    # The exporter reports its progress on stdout, where the benchmark writes JSON lines.
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(
            module,
            (ids, torch.ones_like(ids)),
            fp32,
            input_names=["input_ids", "attention_mask"],
            output_names=["embeddings"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    return fp32, int8


class OnnxEncoder:
    """`encode(texts, batch_size)` -> float32 [n, hidden] with an ONNX Runtime session, on the
    token ids of `tokenize` (a function of a list of texts -> list of id arrays)."""

    def __init__(self, path: str, tokenize, pad_id: int, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per physical core
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.tokenize = tokenize
        self.pad_id = pad_id

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        ids = self.tokenize(list(texts))
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(-lengths, kind="stable")  # longest first, as sentence-transformers
        out = None
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            length = int(lengths[chosen].max())
            input_ids = np.full((len(chosen), length), self.pad_id, np.int64)
            mask = np.zeros((len(chosen), length), np.int64)
            for row, i in enumerate(chosen):
                input_ids[row, : lengths[i]] = ids[i]
                mask[row, : lengths[i]] = 1
            (embeddings,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
            if out is None:
                out = np.zeros((len(ids), embeddings.shape[1]), np.float32)
            out[chosen] = embeddings
        return out


def onnx_encoders(model, folder: str, out_dir: str, threads: int = 0) -> dict:
    """{"onnxruntime-fp32": encode, "onnxruntime-int8": encode} for the SentenceModel `model`,
    whose weights are the Hugging Face folder `folder`, on `threads` intra-op threads (0: one
    per physical core)."""
    fp32, int8 = export_onnx(folder, out_dir, pooling=model.pooling, normalize=model.normalize)

    def tokenize(texts):
        return model.tokenize(texts)[0]

    pad = model.tokenizer.pad_id
    return {
        "onnxruntime-fp32": OnnxEncoder(fp32, tokenize, pad, threads).encode,
        "onnxruntime-int8": OnnxEncoder(int8, tokenize, pad, threads).encode,
    }
