"""Serving: the Open Inference Protocol (KServe v2) over onnxruntime, a Triton
model repository from the same manifest, and a client that talks to both.

Modules: ``errors`` (the user-facing errors), ``tensors`` (the manifest
signature as the server and the client apply it), ``text`` (a text model's
strings into its graph's inputs), ``runtime`` (verify the artifacts, open the
onnxruntime session, load a text model's tokenizer), ``app`` (the starlette
application), ``binary`` (Triton's binary tensor data extension), ``protocol``
(the HTTP/1.1 connection: httptools, the bounds, the inference fast path), ``server`` (uvicorn, graceful shutdown), ``triton_repo``
(``lepton export triton``; a text model's ensemble), ``triton_tokenizer`` (the
ensemble's tokenizer step, run by Triton's Python backend), ``client``
(``lepton predict``, ``lepton verify-serving``).
Importing this package imports nothing heavy; import the module you need.
"""

# No extra check here: ``text`` also serves the pipeline (its parity gate tokenizes as the server does) and
# needs only numpy and tokenizers; each other module checks the 'serve' extra itself, so `lepton serve` /
# `predict` / `export triton` still fail with one line naming it.
