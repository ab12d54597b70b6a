"""A tiny text model, made here from nothing: a BERT-like classifier from a transformers config (random weights,
a 90-token vocabulary), its tokenizer built with the ``tokenizers`` library, exported to ONNX with dynamic batch and
sequence axes, and a manifest (schema 1.2.0) that lists both artifacts and states ``signature.text``.

No download: the vocabulary is written below. Serving tests use it as a user's published text model.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from lepton_cdk.contract import (
    MANIFEST_FILENAME,
    Artifact,
    Lineage,
    Manifest,
    ParityReport,
    ServingNeeds,
    Signature,
    TensorSpec,
    TextSignature,
    write_manifest,
)

LABELS = ["computers", "science", "work"]
GRAPH_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
_WORDS = "the a of to and in is it that for on with as was at by this be are from or an have not but".split()


def build_tokenizer(path: Path) -> Path:
    """A WordPiece tokenizer (lowercasing, accents stripped, BERT's pre-tokenizer, [CLS] ... [SEP]) saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    chars = string.ascii_lowercase + string.digits
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS, *chars, *("##" + c for c in chars), *string.punctuation]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.save(str(path))
    return path


def export_classifier(path: Path, vocab_size: int, *, seed: int = 0) -> Path:
    """A 2-layer BERT classifier with random weights (logits and probabilities over :data:`LABELS`) as one ONNX file."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, num_labels=len(LABELS), attn_implementation="eager",
                        initializer_range=0.5)  # wide weights: distinct texts get visibly distinct outputs
    torch.manual_seed(seed)
    bert = BertForSequenceClassification(config).eval()

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            logits = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
            return logits, torch.softmax(logits, dim=-1)

    ids = torch.randint(5, vocab_size, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # a padded row, so the export does not specialise on an all-ones mask
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {n: {0: batch, 1: sequence} for n in GRAPH_INPUTS}
    # dynamo=True and one self-contained file: the legacy exporter traced this BERT 5e-3 away from PyTorch
    torch.onnx.export(Classifier().eval(), (ids, mask, torch.zeros_like(ids)), str(path), input_names=GRAPH_INPUTS,
                      output_names=["logits", "probabilities"], dynamic_shapes=dynamic, opset_version=18, dynamo=True,
                      external_data=False, verbose=False)
    return path


def write_text_manifest(folder: Path, *, name: str = "tiny-text", column: str | None = "message", max_length: int = 16,
                        max_batch_size: int = 8) -> Path:
    """Write model.onnx, tokenizer.json and manifest.json (a text classifier) into ``folder``; returns the manifest path.

    ``column`` is the CSV column the text input records (None: none recorded, so clients read a column named ``text``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_file = build_tokenizer(folder / "tokenizer.json")
    vocab_size = len(json.loads(tokenizer_file.read_text())["model"]["vocab"])
    model_file = export_classifier(folder / "model.onnx", vocab_size)
    graph_inputs = [TensorSpec(n, "int64", ["batch", "sequence"]) for n in GRAPH_INPUTS]
    manifest = Manifest(
        model_name=name,
        model_version="0a1b2c3d4e5f",
        task="multiclass-classification",
        artifacts=[Artifact.from_file("model", model_file, folder, "application/vnd.onnx"),
                   Artifact.from_file("tokenizer", tokenizer_file, folder, "application/json")],
        signature=Signature(
            opset=18,
            inputs=[TensorSpec("text", "string", ["batch"], columns=[column] if column else None)],
            outputs=[TensorSpec("logits", "float32", ["batch", len(LABELS)]), TensorSpec("probabilities", "float32", ["batch", len(LABELS)])],
            text=TextSignature(input="text", tokenizer="tokenizer", max_length=max_length, graph_inputs=graph_inputs, lowercase=True),
            labels=list(LABELS),
        ),
        parity=ParityReport(atol=1e-4, rtol=1e-3, max_abs_diff=1e-7, max_rel_diff=1e-6, rows_checked=16, passed=True),
        metrics={},
        lineage=Lineage(data_fingerprint="0" * 64, source_model_sha256="1" * 64, seed=0),
        serving=ServingNeeds(min_gpu_memory_gib=1.0, max_batch_size=max_batch_size),
    )
    return write_manifest(manifest, folder / MANIFEST_FILENAME)
