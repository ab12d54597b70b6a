"""model_pipeline: the ML half of lepton-cdk.

Load data -> load (or pretrain) the source model -> transfer fine-tune on
the target domain (``task + lambda * trans``) -> evaluate -> ONNX export ->
parity gate -> ``manifest.json``. Entry point:
:func:`model_pipeline.pipeline.run_pipeline`, which runs the recipe for the
run's source model (:mod:`model_pipeline.recipe`).

Modules: ``recipe`` (the named stages and the runner), ``sources`` (what
``--source-model`` is: a Hugging Face folder, your own network's weights,
an ONNX file), ``pipeline`` (the tabular recipe), ``text_recipe``,
``text_models``, ``text_train`` (Hugging Face text models: load, heads,
LoRA, training, metrics), ``onnx_source`` (an ONNX file served as it is),
``datasets`` (bundled synthetic sample), ``data`` (load, clean, split,
preprocess, fingerprint), ``schema`` (read any table, infer numeric and
categorical columns, reconcile counts), ``config`` (YAML/TOML config
files), ``models`` (MLP, tabular transformer, low-rank adapters),
``losses``, ``train`` (strategies full/head/adapter), ``export`` (ONNX,
categorical encoding in the graph, text models with dynamic axes),
``validate`` (parity gates), ``quantize`` (int8, gated on decision
agreement), ``report`` (Markdown, plots, TensorBoard), ``remote``
(SageMaker / Vertex AI job requests), ``predict`` (verify, then score a
table). Importing this package imports nothing heavy; import the module you
need (transformers is imported only for a Hugging Face source).
"""

from lepton_cdk.extras import require_extra

# Checked here, before any submodule: `lepton pipeline ...` and `lepton demo` import model_pipeline first,
# so a base install fails at once with one line naming the extra, not after minutes of work.
require_extra(__name__, "pipeline")
