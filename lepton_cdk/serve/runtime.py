"""Open a manifest's model for serving: verify the bytes, then create the onnxruntime session.

The model file is read once; its sha256 is computed over exactly the bytes
handed to onnxruntime, so a file swapped between the check and the load
cannot be served; every other artifact the manifest lists is re-hashed too,
and no path may leave the manifest's folder. The execution provider actually in use is read back from
the session, because ``onnxruntime-gpu`` silently falls back to CPU when the
CUDA libraries are missing.

A text model (``signature.text`` in its manifest) is served with its
tokenizer: the tokenizer artifact is built from the very bytes its checksums
were computed over, and each request's strings become the graph's inputs
through :class:`lepton_cdk.serve.text.TextEncoder`, the function the
pipeline's parity gate used, so what was gated is what is served.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lepton_cdk.contract import ContractError, Manifest, read_artifact_bytes, read_manifest, verify_artifact
from lepton_cdk.contract.serving import tensor_type

from .errors import InferenceRequestError, ServeError
from .tensors import ModelSignature
from .text import TextEncoder, TextInputError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_SHORT_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": "TensorrtExecutionProvider"}


def resolve_providers(spec: str, available: list[str]) -> tuple[list[str], bool]:
    """The provider list to ask onnxruntime for, and whether the first one is required.

    ``auto`` asks for CUDA only when this onnxruntime build has it, then CPU;
    otherwise ``spec`` is a comma-separated list of short (``cuda``, ``cpu``)
    or full provider names, and the first must really be in use.
    """
    if spec.strip().lower() == "auto":
        return ([CUDA, CPU] if CUDA in available else [CPU]), False
    wanted = [_SHORT_NAMES.get(p.strip().lower(), p.strip()) for p in spec.split(",") if p.strip()]
    if not wanted:
        raise ServeError("--providers is empty; use auto, cpu, cuda or a comma-separated list of onnxruntime provider names")
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ServeError(
            f"execution provider(s) {', '.join(missing)} are not in this onnxruntime build (it has {', '.join(available)}); "
            "install onnxruntime-gpu for CUDA, or use --providers auto"
        )
    if CPU not in wanted:
        wanted.append(CPU)
    return wanted, True


@dataclass
class LoadedModel:
    """A verified model, its onnxruntime session and the provider that runs it."""

    manifest: Manifest
    signature: ModelSignature
    session: object  # onnxruntime.InferenceSession
    provider: str
    manifest_path: Path
    text: TextEncoder | None = None  # a text model's tokenizer step; None for a tabular model

    def graph_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's inputs for validated request ``feeds``: a text model's strings tokenized, other feeds as they are.

        Raises :class:`InferenceRequestError` (400) when the tokenizer refuses a text.
        """
        if self.text is None:
            return feeds
        try:
            return self.text.encode(feeds[self.text.input_name].ravel().tolist())
        except TextInputError as exc:
            raise InferenceRequestError(f"input {self.text.input_name!r}: {exc}") from None

    def infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Tokenize a text model's strings, run the session (thread-safe in onnxruntime) and return the named outputs."""
        values = self.session.run(outputs, self.graph_feeds(feeds))
        return dict(zip(outputs, values, strict=True))


def verified_model_bytes(manifest: Manifest) -> bytes:
    """The primary artifact's bytes, after checking their size, sha256 and crc32c against the manifest.

    The checksums are computed over exactly the bytes returned (no second read to swap a file into),
    and the path is resolved inside the manifest's folder (see :func:`lepton_cdk.contract.read_artifact_bytes`).
    """
    try:
        return read_artifact_bytes(manifest, manifest.model_artifact)
    except ContractError as exc:
        raise ServeError(f"refusing to serve: {exc}") from None


def verify_other_artifacts(manifest: Manifest) -> None:
    """Re-hash every artifact but the model (read by :func:`verified_model_bytes`): a server starts only from a
    manifest whose every file is the one it records, the preprocessor included."""
    for art in manifest.artifacts:
        if art.name != manifest.primary_artifact:
            try:
                verify_artifact(manifest, art)
            except ContractError as exc:
                raise ServeError(f"refusing to serve: {exc}") from None


def load_text_encoder(manifest: Manifest) -> TextEncoder | None:
    """A text model's :class:`~lepton_cdk.serve.text.TextEncoder`, built from its checksum-verified tokenizer
    artifact (None for a tabular model); :class:`ServeError` (one line) when the artifact does not match."""
    if manifest.signature.text is None:
        return None
    try:
        return TextEncoder.from_manifest(manifest)
    except ContractError as exc:
        raise ServeError(f"refusing to serve: {exc}") from None


def _check_session_matches(session, manifest: Manifest, path: Path) -> None:
    """The graph's inputs and outputs must be the manifest's, or requests would be validated against a lie.

    A text model's graph takes ``signature.text.graph_inputs`` (token ids), not the strings clients send.
    """
    for label, specs, args in (("input", manifest.signature.graph_inputs, session.get_inputs()),
                               ("output", manifest.signature.outputs, session.get_outputs())):
        graph = {a.name: a.type for a in args}
        for spec in specs:
            onnx_type = tensor_type(spec).onnx  # an unsupported dtype fails here with its own message
            if spec.name not in graph:
                raise ServeError(f"manifest {path} lists {label} {spec.name!r} but the ONNX graph has {sorted(graph)}; re-run the pipeline")
            if graph[spec.name] != onnx_type:
                raise ServeError(f"{label} {spec.name!r} is {graph[spec.name]} in the ONNX graph but {spec.dtype} in manifest {path}; re-run the pipeline")
    # a graph input the manifest does not list could never be fed: every request would fail inside onnxruntime
    unlisted = [a.name for a in session.get_inputs() if a.name not in {s.name for s in manifest.signature.graph_inputs}]
    if unlisted:
        raise ServeError(f"the ONNX graph takes input(s) {', '.join(map(repr, unlisted))} that manifest {path} does not list; re-run the pipeline")


def load_model(manifest_path: str | Path, *, providers: str = "auto", threads: int = 0) -> LoadedModel:
    """Read the manifest, verify every artifact and open an onnxruntime session for the model.

    ``threads`` sets onnxruntime's intra-op threads (0: its default).
    Raises :class:`ServeError` (one line) when an artifact does not match the
    manifest or leaves its folder, the graph disagrees with the signature, or
    a required provider is not in use.
    """
    import onnxruntime as ort

    manifest = read_manifest(manifest_path, verify=False)
    path = Path(manifest_path)
    data = verified_model_bytes(manifest)
    verify_other_artifacts(manifest)
    text = load_text_encoder(manifest)
    wanted, required = resolve_providers(providers, ort.get_available_providers())
    if CUDA in wanted and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu[cuda,cudnn] ships CUDA/cuDNN as pip packages; they load only when asked
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library shows up below as a fallback to CPU
            logging.getLogger("lepton.serve").warning("lepton serve: preloading CUDA libraries failed: %s", exc)
    options = ort.SessionOptions()
    # fatal only: its warnings would bury the one startup line that matters, and its error line for a refused run repeats,
    # per request, what the 400 (or the 500 and the server's own log line) already says: a client could fill the log
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own exception types for a bad graph
        raise ServeError(f"onnxruntime cannot load {manifest.artifact_file(manifest.model_artifact)}: {exc}; re-export the model") from None
    in_use = session.get_providers()[0]
    if required and in_use != wanted[0]:
        raise ServeError(f"{wanted[0]} was asked for but onnxruntime runs the model on {in_use} (its libraries did not load); "
                         "check the CUDA/cuDNN install or use --providers auto")
    if CUDA in wanted and in_use != CUDA:
        logging.getLogger("lepton.serve").warning("lepton serve: this onnxruntime has %s but it did not load; serving on %s", CUDA, in_use)
    _check_session_matches(session, manifest, path)
    return LoadedModel(manifest=manifest, signature=ModelSignature.from_manifest(manifest), session=session,
                       provider=in_use, manifest_path=path, text=text)

