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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lepton_cdk.contract import ContractError, Manifest, read_artifact_bytes, read_manifest, verify_artifact
from lepton_cdk.contract.serving import tensor_type

from .errors import InferenceFailure, InferenceRequestError, ServeError
from .tensors import InferenceRequest, ModelSignature
from .text import TextEncoder, TextInputError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_SHORT_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": "TensorrtExecutionProvider"}
_log = logging.getLogger("lepton.serve")


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

    def run(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """:meth:`infer` for one validated request, its failures sorted by whose they are.

        Raises :class:`InferenceRequestError` (400) for values the signature passed but the graph refused (an index
        past a table, a text the tokenizer refuses): the client's to fix; :class:`InferenceFailure` for any other
        onnxruntime error, logged once as the server's.
        """
        try:
            return self.infer(request.feeds, request.outputs)
        except InferenceRequestError:
            raise
        except Exception as exc:  # onnxruntime's own error types; the request was valid by the signature
            from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

            message = " ".join(str(exc).split())
            if isinstance(exc, InvalidArgument):
                raise InferenceRequestError(f"the model refused the request's values: {message}; check them against the model's "
                                            "expected ranges") from None
            _log.error("lepton serve: inference failed in onnxruntime: %s", message)
            raise InferenceFailure(f"inference failed in onnxruntime: {message}") from None

    def run_many(self, requests: Sequence[InferenceRequest]) -> list[dict[str, np.ndarray] | InferenceRequestError | InferenceFailure]:
        """Each request's outputs (or the error that is its alone), in order: dynamic batching, as Triton's scheduler does.

        Requests that ask for the same outputs of a batched tabular model run as one ``session.run`` on their rows
        concatenated, up to the model's ``max_batch_size``. If onnxruntime refuses a merged batch, each request of it
        runs alone, so a refusal reaches only the request that caused it. A text model's requests always run alone: its
        tokenizer pads a batch to the longest text, so merged, a request's arrays would not be its own.
        """
        if len(requests) == 1:  # the common case on a quiet server: nothing to group
            return [self._run_alone(requests[0])]
        results: list = [None] * len(requests)
        groups: dict[tuple[str, ...], list[int]] = {}
        mergeable = self.signature.batched and self.text is None
        for index, request in enumerate(requests):
            groups.setdefault(tuple(request.outputs) if mergeable else (str(index),), []).append(index)
        for group in groups.values():
            for chunk in self._chunks(group, requests):
                merged = self._run_merged([requests[i] for i in chunk]) if len(chunk) > 1 else None
                for position, index in enumerate(chunk):
                    results[index] = merged[position] if merged is not None else self._run_alone(requests[index])
        return results

    def run_in_order(self, decoded: Sequence[InferenceRequest | InferenceRequestError]) -> Iterator[
            tuple[InferenceRequest | None, dict[str, np.ndarray] | InferenceRequestError | InferenceFailure]]:
        """:meth:`run_many` over the requests that decoded, given back in arrival order beside what failed to decode:
        for each item ``(request, its outputs or error)``, or ``(None, the decoding error)``. Lazy, so a caller that
        sends each answer as it comes encodes the next one only after."""
        requests = [item for item in decoded if not isinstance(item, InferenceRequestError)]
        ran = iter(zip(requests, self.run_many(requests), strict=True))
        for item in decoded:
            yield (None, item) if isinstance(item, InferenceRequestError) else next(ran)

    def _run_alone(self, request: InferenceRequest) -> dict[str, np.ndarray] | InferenceRequestError | InferenceFailure:
        try:
            return self.run(request)
        except (InferenceRequestError, InferenceFailure) as exc:
            return exc

    def _chunks(self, group: list[int], requests: Sequence[InferenceRequest]) -> list[list[int]]:
        # consecutive requests whose rows together fit the model's max_batch_size run together
        chunks: list[list[int]] = []
        rows = 0
        for index in group:
            n = requests[index].rows
            if chunks and rows + n <= self.signature.max_batch_size:
                chunks[-1].append(index)
                rows += n
            else:
                chunks.append([index])
                rows = n
        return chunks

    def _run_merged(self, requests: list[InferenceRequest]) -> list[dict[str, np.ndarray]] | None:
        """Each request's outputs from one run on the requests' rows concatenated; None when onnxruntime refuses the batch."""
        try:
            # a dynamic dimension past the batch one may differ between requests: then they cannot be concatenated
            feeds = {name: np.concatenate([r.feeds[name] for r in requests]) for name in requests[0].feeds}
            merged = self.infer(feeds, requests[0].outputs)
        except Exception:  # whatever it is, running each request alone attributes it to the right one
            return None
        answers, start = [], 0
        for request in requests:  # slices, not np.split: a view per output is all a request needs
            end = start + request.rows
            answers.append({name: array[start:end] for name, array in merged.items()})
            start = end
        return answers


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


def default_intra_op_threads(text: TextEncoder | None) -> int:
    """onnxruntime's intra-op threads when ``--threads`` is 0: one for a tabular model, onnxruntime's own default (0) for a text model.

    A table model's run takes microseconds: splitting it across threads costs more than it saves, and onnxruntime's
    pool spins between runs, taking the CPUs that concurrent requests (and, on a shared machine, their clients) need.
    Measured with 8 tritonclient processes at batch 64 on 2 CPUs: 4,400 -> 5,700 requests/s over HTTP, 1,700 -> 2,900
    over gRPC. A transformer's matrix products do gain from the cores, so a text model keeps onnxruntime's default.
    """
    return 1 if text is None else 0


def load_model(manifest_path: str | Path, *, providers: str = "auto", threads: int = 0) -> LoadedModel:
    """Read the manifest, verify every artifact and open an onnxruntime session for the model.

    ``threads`` sets onnxruntime's intra-op threads (0: :func:`default_intra_op_threads`).
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
    options.intra_op_num_threads = threads or default_intra_op_threads(text)
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

