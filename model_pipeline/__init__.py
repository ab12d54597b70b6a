"""model_pipeline: the ML half of lepton-cdk.

Preprocess -> pretrain on the source domain -> transfer fine-tune on the
target domain (``task + lambda * trans``) -> ONNX export -> parity gate ->
``manifest.json``. Entry point: :func:`model_pipeline.pipeline.run_pipeline`.

Modules: ``datasets`` (bundled synthetic sample), ``data`` (load, clean,
split, preprocess, fingerprint), ``schema`` (read any table, infer numeric
and categorical columns, reconcile counts), ``config`` (YAML/TOML config
files), ``models`` (MLP, tabular transformer, low-rank adapters),
``losses``, ``train`` (strategies full/head/adapter), ``export`` (ONNX,
categorical encoding in the graph), ``validate`` (parity gate),
``quantize`` (int8, gated on decision agreement), ``report`` (Markdown,
plots, TensorBoard), ``remote`` (SageMaker / Vertex AI job requests),
``predict`` (verify, then score a table), ``pipeline``. Importing this
package imports nothing heavy; import the module you need.
"""

from lepton_cdk.extras import require_extra

# Checked here, before any submodule: `lepton pipeline ...` and `lepton demo` import model_pipeline first,
# so a base install fails at once with one line naming the extra, not after minutes of work.
require_extra(__name__, "pipeline")
