"""The ONNX recipe: an ONNX file you already have, verified, signed into a manifest and served as it is.

``lepton pipeline run --source-model model.onnx`` copies the file byte for
byte; nothing is trained and no data is read (``--fine-tune`` and data
flags are refused: fine-tune the model it was exported from instead).

* load_source: the file must be one self-contained model (no external data
  file), pass ``onnx.checker`` (full check, shapes inferred) and load in
  onnxruntime. With a ``tokenizer.json`` beside it and token inputs
  (``input_ids``, ``attention_mask``, ``token_type_ids``), as
  ``optimum-cli export onnx`` writes, it is a text model: clients send
  strings and its manifest carries the tokenizer (schema 1.2.0);
* gate: there is no PyTorch model to compare with, so the gate checks what
  serving depends on: every output finite, and each probe row scored alone
  (batch 1) answering like the same row inside a batch of 4, within
  ``atol + rtol * |value|`` (a graph that mixes rows, or depends on the
  batch size or padding, fails);
* publish: ``model.onnx`` (and ``tokenizer.json``), ``metrics.json`` and the
  manifest, whose lineage holds the file's sha256 (the data fingerprint is
  that of no data, sha256 of the empty string).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lepton_cdk import __version__ as LEPTON_VERSION
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
    digest_file,
    read_manifest,
    write_json_atomic,
    write_manifest,
)

from .export import BATCH_DIM, read_signature
from .recipe import Evaluation, Exported, Gated, Run, Written
from .sources import SourceModelError, SourceSpec
from .validate import ParityError, _diffs

_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE_TEXTS = ["", "word", "a somewhat longer text, with punctuation and numbers 1 2 3", "Ünïcödé — naïve café 東京"]


@dataclass
class OnnxSource:
    """load_source's output: the verified file, its signature (client-facing) and, for a text model, the encoder."""

    path: Path
    graph: Signature  # what the graph takes
    signature: Signature  # what clients send (a text model: strings)
    encoder: Any  # TextEncoder, or None
    tokenizer_file: Path | None
    sha256: str
    task: str


class OnnxRecipe:
    """An ONNX file as it is (see the module doc)."""

    name = "onnx"

    def __init__(self, spec: SourceSpec) -> None:
        assert spec.path is not None
        self.spec = spec

    def load_data(self, run: Run) -> None:
        """No data: an ONNX source is served as it is."""
        run.progress("data: none (an ONNX source is served as it is)")

    def load_source(self, run: Run, data: None) -> OnnxSource:
        """Verify the file (one self-contained model, the ONNX checker, onnxruntime) and read its signature."""
        import onnx
        import onnxruntime as ort

        path = self.spec.path
        assert path is not None
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise SourceModelError(f"{path} is not an ONNX model ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                                   "pass a file written by torch.onnx.export or onnx.save") from None
        external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        if external:
            raise SourceModelError(f"{path} keeps {len(external)} weight(s) in an external data file; serve one self-contained "
                                   "file: onnx.save(onnx.load(path), out, save_as_external_data=False)")
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise SourceModelError(f"{path} fails the ONNX checker ({' '.join(str(exc).split())[:200]}); re-export the model") from None
        try:
            ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SourceModelError(f"onnxruntime cannot load {path} ({' '.join(str(exc).split())[:200]}); re-export it for "
                                   f"onnxruntime {ort.__version__}") from None
        graph = read_signature(path)
        served = ("float32", "float64", "int64", "int32", "bool", "string")  # the manifest's tensor dtypes
        odd = [f"{t.name} ({t.dtype})" for t in (*graph.inputs, *graph.outputs) if t.dtype not in served]
        if odd:
            raise SourceModelError(f"{path} has tensors of types lepton-cdk does not serve: {', '.join(odd[:3])}; re-export it with "
                                   f"{', '.join(served)} inputs and outputs")
        config = run.config
        tokenizer_file = path.parent / "tokenizer.json"
        names = [t.name for t in graph.inputs]
        encoder = None
        signature = graph
        if tokenizer_file.is_file() and "input_ids" in names and set(names) <= set(_TOKEN_INPUTS):
            from lepton_cdk.serve.text import TextEncoder

            max_length = config.max_length
            beside = path.parent / "config.json"
            if beside.is_file():
                try:
                    positions = json.loads(beside.read_text(encoding="utf-8")).get("max_position_embeddings")
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    positions = None
                if isinstance(positions, int) and positions > 1:
                    max_length = min(max_length, positions)
            text = TextSignature(input="text", tokenizer="tokenizer", max_length=max_length, graph_inputs=list(graph.inputs))
            encoder = TextEncoder.from_file(tokenizer_file, text)
            signature = Signature(opset=graph.opset, inputs=[TensorSpec("text", "string", [BATCH_DIM], columns=[config.text_column])],
                                  outputs=graph.outputs,
                                  exporter=graph.exporter, text=encoder.text)
        first_out = graph.outputs[0].shape
        task = {"regression": "regression", "embedding": "embedding"}.get(config.task) or \
            ("binary-classification" if first_out and first_out[-1] == 1 else "multiclass-classification")
        run.progress(f"load_source: {path.name} verified (opset {graph.opset}, inputs {', '.join(names)}"
                     f"{', text through tokenizer.json' if encoder else ''})")
        return OnnxSource(path, graph, signature, encoder, tokenizer_file if encoder else None, digest_file(path).sha256, task)

    def fine_tune(self, run: Run, data: None, source: OnnxSource) -> OnnxSource:
        """Nothing to fine-tune: the file is served as it is."""
        run.progress("fine_tune: none (an ONNX source is served as it is)")
        return source

    def evaluate(self, run: Run, data: None, source: OnnxSource, tuned: OnnxSource) -> Evaluation:
        """No data to score: the metrics say where the model came from."""
        return Evaluation({"source": {"kind": "onnx", "file": source.path.name, "sha256": source.sha256}, "comparison": []})

    def export(self, run: Run, data: None, tuned: OnnxSource) -> Exported:
        """Copy the file, byte for byte, and check the copy is the file that was verified."""
        target = run.build / "model.onnx"
        shutil.copyfile(tuned.path, target)
        if digest_file(target).sha256 != tuned.sha256:
            raise SourceModelError(f"{tuned.path} changed while it was being copied; run again when nothing writes to it")
        if tuned.tokenizer_file is not None:
            shutil.copyfile(tuned.tokenizer_file, run.build / "tokenizer.json")
        run.progress(f"export: none, {target.name} is the source file as it is ({target.stat().st_size:,} bytes)")
        return Exported(target, tuned.signature, None)

    def _feeds(self, source: OnnxSource, rows: int, seed: int) -> dict[str, np.ndarray]:
        if source.encoder is not None:
            return source.encoder.encode((_PROBE_TEXTS * rows)[:rows])
        rng = np.random.default_rng(seed)
        feeds = {}
        for spec in source.graph.inputs:
            shape = [rows if i == 0 and isinstance(d, str) else (8 if isinstance(d, str) else int(d)) for i, d in enumerate(spec.shape)]
            if spec.dtype == "string":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            elif spec.dtype.startswith("float"):
                feeds[spec.name] = rng.standard_normal(shape).astype(np.dtype(spec.dtype))
            else:
                feeds[spec.name] = np.zeros(shape, dtype=np.dtype(spec.dtype))
        return feeds

    def gate(self, run: Run, data: None, tuned: OnnxSource, exported: Exported) -> Gated:
        """Every output finite, and each probe row alone answering like the same row in a batch of 4."""
        import onnxruntime as ort

        config = run.config
        session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        dynamic_batch = all(t.shape and isinstance(t.shape[0], str) for t in tuned.graph.inputs)
        rows = 4 if dynamic_batch else int(tuned.graph.inputs[0].shape[0])
        feeds = self._feeds(tuned, rows, config.seed)
        full = dict(zip(names, session.run(names, feeds), strict=True))
        per_output = {n: {"max_abs_diff": 0.0, "max_rel_diff": 0.0} for n in names}
        for i in range(rows if dynamic_batch else 1):
            if dynamic_batch:
                if tuned.encoder is not None:  # alone, the text is not padded: the mask must make that not matter
                    alone_feeds = tuned.encoder.encode([(_PROBE_TEXTS * rows)[i]])
                else:
                    alone_feeds = {k: v[i:i + 1] for k, v in feeds.items()}
                alone = dict(zip(names, session.run(names, alone_feeds), strict=True))
                want = {n: full[n][i:i + 1] for n in names}
            else:  # a fixed batch: the same feeds again must give the same answer
                alone = dict(zip(names, session.run(names, feeds), strict=True))
                want = full
            for n in names:
                got = np.asarray(alone[n])
                if got.shape != np.asarray(want[n]).shape:
                    raise ParityError(f"output {n!r} has shape {list(got.shape)} for one row but {list(np.asarray(want[n]).shape)} "
                                      "for that row in a batch; serve a model whose outputs have the batch first")
                max_abs, max_rel, ok = _diffs(got.astype(np.float64), np.asarray(want[n]).astype(np.float64), config.atol, config.rtol) \
                    if got.dtype != object else (0.0, 0.0, bool(np.all(got == want[n])))
                stats = per_output[n]
                stats["max_abs_diff"], stats["max_rel_diff"] = max(stats["max_abs_diff"], max_abs), max(stats["max_rel_diff"], max_rel)
                if not ok:
                    raise ParityError(f"output {n!r} of {tuned.path.name} for a row alone differs from that row in a batch by up to "
                                      f"{max_abs:.3g} (or is not finite), beyond atol={config.atol:g} + rtol={config.rtol:g}; "
                                      "the graph depends on its batch: re-export it")
        parity = ParityReport(atol=config.atol, rtol=config.rtol, max_abs_diff=max(s["max_abs_diff"] for s in per_output.values()),
                              max_rel_diff=max(s["max_rel_diff"] for s in per_output.values()), rows_checked=rows, passed=True,
                              per_output=per_output,
                              runtime=f"onnxruntime {ort.__version__} {session.get_providers()[0]}; reference: each row alone "
                                      "against the batch (an ONNX source has no PyTorch model)")
        run.progress(f"parity: passed, {rows} probe rows alone vs in a batch, max abs diff {parity.max_abs_diff:.2g}")
        return Gated(parity)

    def write(self, run: Run, data: None, source: OnnxSource, tuned: OnnxSource, evaluation: Evaluation, exported: Exported,
              gated: Gated) -> Written:
        """``metrics.json`` and the manifest listing the model (and tokenizer)."""
        config, build = run.config, run.build
        paths = {"model": exported.path, "metrics": build / "metrics.json"}
        write_json_atomic({"metrics": evaluation.metrics, "training": {}, "config": config.to_dict()}, paths["metrics"])
        artifacts = [Artifact.from_file("model", paths["model"], build, "application/onnx")]
        if source.tokenizer_file is not None:
            paths["tokenizer"] = build / "tokenizer.json"
            artifacts.append(Artifact.from_file("tokenizer", paths["tokenizer"], build, "application/json"))
        artifacts.append(Artifact.from_file("metrics", paths["metrics"], build, "application/json"))
        manifest = Manifest(
            model_name=config.model_name,
            model_version=config.model_version or artifacts[0].sha256[:12],
            task=source.task,
            artifacts=artifacts,
            signature=exported.signature,
            parity=gated.parity,
            metrics=evaluation.metrics,
            lineage=Lineage(data_fingerprint=hashlib.sha256(b"").hexdigest(), source_model_sha256=source.sha256, seed=config.seed,
                            pipeline_version=LEPTON_VERSION),
            serving=ServingNeeds(min_gpu_memory_gib=config.min_gpu_memory_gib, max_batch_size=config.max_batch_size),
        )
        write_manifest(manifest, build / MANIFEST_FILENAME)
        read_manifest(build / MANIFEST_FILENAME, verify=True)
        return Written(paths, manifest)
