"""Raw strings -> a text model's graph inputs, exactly as its manifest says.

The one implementation of ``signature.text`` (manifest schema 1.2.0), used
by every place that feeds a text model: ``lepton serve`` (OIP ``BYTES``
inputs), the Triton tokenizer step, ``lepton predict`` / ``lepton pipeline
predict``, and the pipeline's own training, evaluation and parity gate. So
what is gated is what is served.

API::

    from lepton_cdk.serve.text import TextEncoder

    encoder = TextEncoder.from_manifest(manifest)      # reads the checksum-verified tokenizer artifact
    feeds = encoder.encode(["first text", "second"])   # {"input_ids": int64 [2, n], "attention_mask": ..., ...}
    session.run(None, feeds)

Rules (stated in the signature, never silent):

* each text is tokenized with the ``tokenizer`` artifact (a Hugging Face
  ``tokenizers`` JSON file), special tokens added;
* texts longer than ``max_length`` tokens (special tokens included) are cut
  on the right with the signature's ``truncation`` strategy;
* the batch is padded on the right to its longest text (``padding:
  "longest"``), with the tokenizer's pad token (its padding setting, else
  the first of ``[PAD]``, ``<pad>``, ``<|pad|>`` in its vocabulary, else id
  0: masked out by ``attention_mask`` either way);
* the arrays are int64, named by ``graph_inputs``: ``input_ids``,
  ``attention_mask`` and, when the model takes it, ``token_type_ids``.

Depends on ``tokenizers`` and numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lepton_cdk.contract import ContractError, Manifest, TextSignature, read_artifact_bytes

# graph input name -> the tokenizers.Encoding attribute that fills it
GRAPH_INPUTS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|padding|>")


class TextInputError(ValueError):
    """A batch of texts the encoder refuses (not a string, not UTF-8); the message names the item and the fix."""


def _tokenizers() -> Any:
    from lepton_cdk.extras import require_extra

    require_extra("text models", "serve", modules=("tokenizers",))
    import tokenizers

    return tokenizers


class TextEncoder:
    """Turns a list of strings into the graph inputs ``signature.text`` describes.

    Build one with :meth:`from_manifest` (serving: the tokenizer bytes are the
    ones the manifest's checksums cover), :meth:`from_file` or
    :meth:`from_json` (the pipeline, before a manifest exists). The
    tokenizer's own truncation and padding settings are replaced by the
    signature's, so every encoder of one manifest gives the same arrays.
    """

    def __init__(self, tokenizer: Any, text: TextSignature) -> None:
        unknown = [t.name for t in text.graph_inputs if t.name not in GRAPH_INPUTS]
        if unknown:
            raise ContractError(f"signature.text.graph_inputs has {unknown}, which a tokenizer cannot produce "
                                f"(known: {', '.join(GRAPH_INPUTS)}); re-export the model with those inputs")
        if not isinstance(text.max_length, int) or text.max_length < 2:
            raise ContractError(f"signature.text.max_length is {text.max_length!r}; it must be an integer >= 2")
        self.text = text
        padding = tokenizer.padding or {}
        pad_token = padding.get("pad_token")
        pad_id = padding.get("pad_id")
        if pad_token is None or pad_id is None:
            vocab = tokenizer.get_vocab(with_added_tokens=True)
            pad_token = next((t for t in _PAD_TOKENS if t in vocab), "[PAD]")
            pad_id = vocab.get(pad_token, 0)
        tokenizer.enable_truncation(max_length=text.max_length, strategy=text.truncation, direction="right")
        tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_type_id=0, pad_token=pad_token, length=None)
        self.tokenizer = tokenizer
        self.pad_id = int(pad_id)

    @classmethod
    def from_json(cls, data: bytes | str, text: TextSignature) -> TextEncoder:
        """An encoder from a ``tokenizer.json`` document (bytes or text)."""
        tokenizers = _tokenizers()
        raw = data.decode("utf-8") if isinstance(data, bytes) else data
        try:
            tokenizer = tokenizers.Tokenizer.from_str(raw)
        except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
            detail = " ".join(str(exc).split())[:160]
            raise ContractError(f"the tokenizer is not a Hugging Face tokenizers JSON file ({detail}); "
                                "save it with tokenizer.save('tokenizer.json')") from None
        return cls(tokenizer, text)

    @classmethod
    def from_file(cls, path: str | Path, text: TextSignature) -> TextEncoder:
        """An encoder from a ``tokenizer.json`` file on disk."""
        return cls.from_json(Path(path).read_bytes(), text)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> TextEncoder:
        """The encoder of a text model's manifest, from its checksum-verified tokenizer artifact.

        Raises :class:`~lepton_cdk.contract.ContractError` when the manifest
        has no ``signature.text`` (not a text model) or the artifact does not
        match its checksums.
        """
        text = manifest.signature.text
        if text is None:
            raise ContractError(f"model {manifest.model_name!r} is not a text model (its manifest has no signature.text); "
                                "send its inputs as tensors")
        return cls.from_json(read_artifact_bytes(manifest, text.tokenizer), text)

    @property
    def input_name(self) -> str:
        """The client-facing string input (``signature.text.input``)."""
        return self.text.input

    @property
    def graph_input_names(self) -> list[str]:
        """The graph inputs :meth:`encode` returns, in signature order."""
        return [t.name for t in self.text.graph_inputs]

    def encode(self, texts: Sequence[str | bytes]) -> dict[str, np.ndarray]:
        """``{graph input name: int64 array [len(texts), longest]}`` for a batch of texts.

        Each item is a ``str`` or UTF-8 ``bytes`` (an OIP ``BYTES`` element).
        An empty batch gives arrays of shape ``[0, 0]``. Raises
        :class:`TextInputError` naming the first item that is neither.
        """
        if isinstance(texts, (str, bytes)):
            raise TextInputError("texts must be a list of strings, not one string; wrap it in a list")
        batch: list[str] = []
        for i, item in enumerate(texts):
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise TextInputError(f"text #{i} is not UTF-8 (byte {exc.start}); send UTF-8 encoded text") from None
            elif not isinstance(item, str):
                raise TextInputError(f"text #{i} is a {type(item).__name__}, not a string; send every text as a string")
            batch.append(item)
        if not batch:
            return {name: np.zeros((0, 0), dtype=np.int64) for name in self.graph_input_names}
        encodings = self.tokenizer.encode_batch(batch, add_special_tokens=True)
        return {name: np.array([getattr(e, GRAPH_INPUTS[name]) for e in encodings], dtype=np.int64)
                for name in self.graph_input_names}

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text before truncation, special tokens included (how many texts ``max_length`` cuts).

        Uses a copy of the tokenizer, so :meth:`encode` may run meanwhile in other threads.
        """
        whole = _tokenizers().Tokenizer.from_str(self.tokenizer.to_str())
        whole.no_truncation()
        whole.no_padding()
        return [len(e.ids) for e in whole.encode_batch(list(texts), add_special_tokens=True)]
