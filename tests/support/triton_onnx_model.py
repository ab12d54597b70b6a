"""Test stand-in for Triton's ONNX Runtime backend, which the nvidia-pytriton wheel lacks: a Python-backend ``model.py``
running the ``model.onnx`` beside it on onnxruntime (CPU), with the inputs and outputs its ``config.pbtxt`` declares.

:func:`tests.support.triton.python_backend_repository` copies it into a repository ``lepton export triton`` wrote. It
runs inside Triton's Python backend stub (``triton_python_backend_utils`` exists only there), never in ``.venv``.
Requests Triton's dynamic batcher hands over together run as one ``session.run``, as the ONNX Runtime backend does.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One onnxruntime session; batched models concatenate the requests of one ``execute`` call along axis 0."""

    def initialize(self, args):
        """Open ``model.onnx`` and read the tensor names and batching from the model config."""
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        # onnxruntime's default threading, as Triton's ONNX Runtime backend and `lepton serve` use it
        self.session = ort.InferenceSession(str(Path(__file__).parent / "model.onnx"), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        """One response per request, in order."""
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        if self.batched and len(requests) > 1:
            sizes = [len(f[self.inputs[0]]) for f in feeds]
            merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
            values = self.session.run(self.outputs, merged)
            bounds = np.cumsum(sizes)[:-1]
            parts = [np.split(v, bounds) for v in values]
            results = [[p[i] for p in parts] for i in range(len(requests))]
        else:
            results = [self.session.run(self.outputs, f) for f in feeds]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in zip(self.outputs, vs, strict=True)]) for vs in results]
