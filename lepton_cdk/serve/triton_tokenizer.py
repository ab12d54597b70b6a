"""The tokenizer step of a text model's Triton ensemble: a Python-backend model, raw strings in, token ids out.

``lepton export triton`` copies this file to ``<model>-tokenizer/1/model.py``,
beside the manifest's ``tokenizer.json`` and ``lepton_vendor/`` (a copy of
``lepton_cdk.serve.text`` and the stdlib-only ``lepton_cdk.contract`` it
imports), so Triton tokenizes with the very code ``lepton serve`` and the
pipeline's parity gate use. The Python environment Triton runs it in needs
``tokenizers`` and numpy, nothing of lepton-cdk.

The step's ``config.pbtxt`` parameters carry ``signature.text`` (as JSON),
the tokenizer's sha256 from the manifest, and the request limits
``lepton serve`` applies (texts per request, characters per text). The
tokenizer file is hashed at load and refused on a mismatch; a request past a
limit, or with text that is not UTF-8, gets an error naming the text and the
fix (Triton answers it as a 400).

Nothing here imports Triton's ``triton_python_backend_utils`` at module
level, so the module imports anywhere (docs, linters); Triton provides it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENDOR_DIR = "lepton_vendor"
TOKENIZER_FILE = "tokenizer.json"
PARAMETER_TEXT = "lepton.text"
PARAMETER_TOKENIZER_SHA256 = "lepton.text.tokenizer_sha256"
PARAMETER_MAX_BATCH_SIZE = "lepton.max_batch_size"
PARAMETER_MAX_TEXT_CHARS = "lepton.text.max_chars"


class RequestRefused(ValueError):
    """A request this step refuses; the message names the problem and the fix."""


def string_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a Triton model config (as Triton hands it to ``initialize``), key -> string value."""
    return {key: value.get("string_value", "") for key, value in (model_config.get("parameters") or {}).items()}


def checked_texts(items: list[Any], *, input_name: str, max_texts: int, max_chars: int) -> list[str]:
    """The request's strings, decoded from UTF-8, after the limits ``lepton serve`` applies to the same request."""
    if len(items) > max_texts:
        raise RequestRefused(f"the request holds {len(items)} texts, over this model's max_batch_size of {max_texts}; "
                             "split it into smaller requests")
    texts = []
    for index, item in enumerate(items):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestRefused(f"input {input_name!r}: text #{index} is not UTF-8 (byte {exc.start}); send UTF-8 text") from None
        if not isinstance(item, str):
            raise RequestRefused(f"input {input_name!r}: text #{index} is a {type(item).__name__}, not a string; send strings")
        if len(item) > max_chars:
            raise RequestRefused(f"input {input_name!r}: text #{index} has {len(item)} characters, over this server's limit of "
                                 f"{max_chars}; send shorter texts (the model reads only its first max_length tokens of each)")
        texts.append(item)
    return texts


def load_encoder(folder: Path, parameters: dict[str, str]) -> Any:
    """The :class:`~lepton_cdk.serve.text.TextEncoder` of ``folder``'s tokenizer, after checking its sha256 against the manifest's."""
    vendor = str(folder / VENDOR_DIR)
    if vendor not in sys.path:
        sys.path.insert(0, vendor)  # the copied lepton_cdk wins over any other installed in this environment
    from lepton_cdk.contract import TensorSpec, TextSignature
    from lepton_cdk.serve.text import TextEncoder

    data = (folder / TOKENIZER_FILE).read_bytes()
    want = parameters.get(PARAMETER_TOKENIZER_SHA256, "")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise RuntimeError(f"{folder / TOKENIZER_FILE} has sha256 {got} but the model config records {want!r}; "
                           "re-run `lepton export triton` from the verified manifest")
    text = json.loads(parameters[PARAMETER_TEXT])
    signature = TextSignature(**{**text, "graph_inputs": [TensorSpec(**t) for t in text["graph_inputs"]]})
    return TextEncoder.from_json(data, signature)


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize`` once, then ``execute`` per batch of requests."""

    def initialize(self, args: dict[str, str]) -> None:
        """Verify and load the tokenizer named by this model's config."""
        parameters = string_parameters(json.loads(args["model_config"]))
        self.encoder = load_encoder(HERE, parameters)  # this file is <model>/1/model.py, beside the tokenizer
        self.max_texts = int(parameters[PARAMETER_MAX_BATCH_SIZE])
        self.max_chars = int(parameters[PARAMETER_MAX_TEXT_CHARS])

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request: the graph's int64 inputs, or an error naming what the client must fix."""
        import triton_python_backend_utils as pb_utils

        from lepton_cdk.serve.text import TextInputError

        name = self.encoder.input_name
        responses = []
        for request in requests:
            try:
                items = pb_utils.get_input_tensor_by_name(request, name).as_numpy().ravel().tolist()
                feeds = self.encoder.encode(checked_texts(items, input_name=name, max_texts=self.max_texts, max_chars=self.max_chars))
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in feeds.items()]))
            except (RequestRefused, TextInputError) as exc:
                # INVALID_ARG: Triton answers 400, the client's to fix (the default code answers 500)
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses
