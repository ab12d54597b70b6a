"""Serving: the Open Inference Protocol (KServe v2) over onnxruntime, a Triton
model repository from the same manifest, and a client that talks to both.

Modules: ``errors`` (the user-facing errors), ``tensors`` (the manifest
signature as the server and the client apply it), ``runtime`` (verify the
artifact, open the onnxruntime session), ``app`` (the starlette application),
``server`` (uvicorn, graceful shutdown), ``triton_repo`` (``lepton export
triton``), ``client`` (``lepton predict``, ``lepton verify-serving``).
Importing this package imports nothing heavy; import the module you need.
"""

from lepton_cdk.extras import require_extra

# Every module here needs the 'serve' extra (triton_repo too: it verifies the model through runtime, numpy);
# checked once here so `lepton serve` / `predict` / `export triton` fail with one line, not a traceback.
require_extra(__name__, "serve")
