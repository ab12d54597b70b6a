"""model_pipeline: the ML half of lepton-cdk.

Preprocess -> pretrain on the source domain -> transfer fine-tune on the
target domain (``task + lambda * trans``) -> ONNX export -> parity gate ->
``manifest.json``. Entry point: :func:`model_pipeline.pipeline.run_pipeline`.

Modules: ``datasets`` (bundled synthetic sample), ``data`` (load, clean,
split, preprocess, fingerprint), ``models``, ``losses``, ``train``,
``export``, ``validate`` (parity gate), ``pipeline``. Importing this package
imports nothing heavy; import the module you need.
"""
