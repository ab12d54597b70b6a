"""Pipeline configuration files: YAML or TOML, in sections, checked before any work.

A file maps onto :class:`PipelineConfig` (below)::

    data:
      source: data/source.csv      # CSV or Parquet; omit both to generate the bundled sample
      target: data/target.csv
      label: default
      task: classification         # or regression
      drop_columns: [customer_id]
    model:
      kind: mlp                    # or transformer
      hidden: [64, 32]
    source:
      model: models/bert-finetuned # a model you already have (see model_pipeline.sources); omit to pretrain one
    text:
      column: text                 # the text column of a Hugging Face source's tables
      max_length: 128
    train:
      strategy: adapter            # full | head | adapter (= lora)
      lambda: 0.1
      consistency: kd              # mse (squared logit distance) | kd (distillation, uses temperature)
      temperature: 2.0
    export:
      opset: 18
      quantize: true

Unknown sections or keys are errors that name the closest known key, so a
typo never silently falls back to a default. Relative data paths are read
relative to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from lepton_cdk.yaml_documents import MAX_YAML_NODES, load_yaml  # noqa: F401 - MAX_YAML_NODES re-exported for callers

# The pipeline's vocabularies live here, with the config that validates against them, so reading and
# checking a config (``--dry-run``, remote requests) never imports torch.
LABEL = "default"  # the bundled sample's label column
TASKS = ("classification", "regression", "embedding")  # embedding: a Hugging Face source only
# adapter and lora are one strategy: low-rank adapters beside the backbone's Linear layers, merged before export
STRATEGIES = ("full", "head", "adapter", "lora")
POOLING = ("mean", "mean_normalized")
CONSISTENCY = ("mse", "kd")  # mse: squared logit distance; kd: distillation with a temperature

# (section, key) -> PipelineConfig field
KEYS: dict[tuple[str, str], str] = {
    ("data", "source"): "source_csv",
    ("data", "target"): "target_csv",
    ("data", "label"): "label",
    ("data", "task"): "task",
    ("data", "drop_columns"): "drop_columns",
    ("data", "max_categories"): "max_categories",
    ("data", "val_frac"): "val_frac",
    ("data", "test_frac"): "test_frac",
    ("data", "seed"): "seed",
    ("data", "n_source"): "n_source",
    ("data", "n_target"): "n_target",
    ("source", "model"): "source_model",
    ("source", "factory"): "model_factory",
    ("text", "column"): "text_column",
    ("text", "max_length"): "max_length",
    ("text", "pooling"): "text_pooling",
    ("text", "lr"): "text_lr",
    ("text", "scratch_lr"): "text_scratch_lr",
    ("text", "batch_size"): "text_batch_size",
    ("text", "epochs"): "text_epochs",
    ("text", "scratch_epochs"): "text_scratch_epochs",
    ("model", "kind"): "model",
    ("model", "hidden"): "hidden",
    ("model", "dropout"): "dropout",
    ("model", "d_model"): "d_model",
    ("model", "n_heads"): "n_heads",
    ("model", "n_layers"): "n_layers",
    ("model", "name"): "model_name",
    ("model", "version"): "model_version",
    ("train", "strategy"): "strategy",
    ("train", "adapter_rank"): "adapter_rank",
    ("train", "lambda"): "lambda_",
    ("train", "consistency"): "consistency",
    ("train", "temperature"): "temperature",
    ("train", "epochs_pretrain"): "epochs_pretrain",
    ("train", "epochs_finetune"): "epochs_finetune",
    ("train", "batch_size"): "batch_size",
    ("train", "finetune_batch_size"): "finetune_batch_size",
    ("train", "lr"): "lr",
    ("train", "finetune_lr"): "finetune_lr",
    ("train", "patience"): "patience",
    ("train", "compare"): "compare",
    ("train", "torch_threads"): "torch_threads",
    ("export", "opset"): "opset",
    ("export", "atol"): "atol",
    ("export", "rtol"): "rtol",
    ("export", "quantize"): "quantize",
    ("export", "min_agreement"): "min_agreement",
    ("export", "report"): "report",
    ("serving", "min_gpu_memory_gib"): "min_gpu_memory_gib",
    ("serving", "max_batch_size"): "max_batch_size",
    ("remote", "image"): "remote_image",
    ("remote", "instance_type"): "remote_instance_type",
    ("remote", "region"): "remote_region",
    ("remote", "project"): "remote_project",
    ("remote", "role_arn"): "remote_role_arn",
    ("remote", "output_uri"): "remote_output_uri",
}
_SECTIONS = sorted({s for s, _ in KEYS})
_TUPLES = {"hidden", "drop_columns"}


# the manifest schema's patterns, checked up front so a bad name fails in
# milliseconds instead of after training
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_OPSETS = (18, 21)
_FACTORY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")  # torch's ONNX function library targets 18; newer ones are converted


class ConfigError(ValueError):
    """The pipeline configuration (or output folder) is unusable; one line says which value and the allowed range."""


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a pipeline run depends on. Defaults run the bundled demo.

    Data: by default a sample of ``n_source`` source and ``n_target`` target
    rows is generated from ``seed``; give both ``source_csv`` and
    ``target_csv`` (CSV or Parquet) to train on your own tables instead.

    Source model: by default one is pretrained on the source table. With
    ``source_model`` (see :mod:`model_pipeline.sources`) the run starts from
    a model you already have: a Hugging Face folder, weights for the
    network ``model_factory`` builds, or an ONNX file (served as it is);
    then ``target_csv`` is required and ``source_csv`` optional.
    """

    seed: int = 7
    n_source: int = 20_000
    n_target: int = 1_200
    source_csv: str | Path | None = None
    target_csv: str | Path | None = None
    val_frac: float = 0.15
    test_frac: float = 0.25
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    epochs_pretrain: int = 40
    epochs_finetune: int = 60
    batch_size: int = 512
    finetune_batch_size: int = 64
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    patience: int = 6
    # weight of the consistency term; on the bundled sample larger values hold
    # the student too close to a source model that is miscalibrated for the target
    lambda_: float = 0.1
    atol: float = 1e-5
    rtol: float = 1e-4
    opset: int = 18
    model_name: str = "credit-risk"
    model_version: str | None = None  # Default: the first 12 hex digits of model.onnx's sha256
    min_gpu_memory_gib: float = 1.0
    max_batch_size: int = 1024
    # Default 1, for the run only (the previous setting is restored): a model
    # this small gains nothing from more intra-op threads, and on a busy
    # machine their spin-waiting made pretraining 5-20x slower. None leaves
    # torch's own setting.
    torch_threads: int | None = 1
    # --- your own tables (schema inferred; see model_pipeline.schema) ---
    label: str = LABEL
    task: str = "classification"  # or "regression"
    drop_columns: tuple[str, ...] = ()
    max_categories: int = 50
    # --- the network and how it is fine-tuned ---
    model: str = "mlp"  # or "transformer"
    d_model: int = 32  # transformer width, heads and blocks
    n_heads: int = 4
    n_layers: int = 2
    strategy: str = "full"  # full | head | adapter
    adapter_rank: int = 4
    consistency: str = "mse"  # mse: squared logit distance; kd: distillation with `temperature`
    temperature: float = 1.0
    # also train from scratch on the target data and fine-tune with lambda 0,
    # so the evaluation table answers "was transfer worth it?"
    compare: bool = True
    # --- extra outputs ---
    quantize: bool = False  # int8 dynamic quantization, shipped only if its decisions agree with fp32
    min_agreement: float = 0.99
    report: bool = True  # report/ (Markdown + PNG plots) and tensorboard/ event files
    # --- remote training requests (model_pipeline.remote) ---
    remote_image: str = "us-docker.pkg.dev/lepton-cdk/train/pipeline:0.1.0"
    remote_instance_type: str | None = None  # Default: n1-standard-8 (Vertex AI) / ml.m5.2xlarge (SageMaker)
    remote_region: str | None = None  # Default: us-east-1 (SageMaker) / us-central1 (Vertex AI)
    remote_project: str | None = None
    remote_role_arn: str | None = None
    remote_output_uri: str | None = None
    # --- a model you already have (model_pipeline.sources) ---
    source_model: str | Path | None = None  # Default: pretrain a source model on the source table
    model_factory: str | None = None  # "package.module:function" building the network that source_model's weights fit
    # --- text models (a Hugging Face source) ---
    text_column: str = "text"
    max_length: int = 128  # tokens per text, special tokens included; Default 128, capped at the model's positions
    text_pooling: str | None = None  # Default: the folder's (sentence-transformers Normalize: mean_normalized), else mean
    text_lr: float | None = None  # Default: 5e-5 for strategy full, 1e-3 for head and adapter/lora
    text_scratch_lr: float = 1e-4  # the from-scratch baseline (same architecture, random weights)
    text_batch_size: int = 16
    text_epochs: int = 10  # fine-tuning epochs (early stopping with `patience` applies)
    text_scratch_epochs: int = 30

    @classmethod
    def small(cls, **overrides: Any) -> PipelineConfig:
        """A configuration for tests and quick looks: a few thousand rows, few epochs (seconds, not minutes)."""
        base = cls(n_source=4_000, n_target=1_200, epochs_pretrain=12, epochs_finetune=30)
        return replace(base, **overrides)

    def problems(self) -> list[str]:
        """Every out-of-range value as ``field=value (allowed ...)``; empty when valid."""
        out: list[str] = []

        def shown(value: Any) -> str:
            # a hostile value (a 400-digit number, a long list) must not turn the one-line error into a page
            try:
                text = repr(value)
            except ValueError:  # an int past Python's digit limit for str()
                return "<an integer of more than 4300 digits>"
            return text if len(text) <= 80 else f"{text[:60]}...({len(text):,} characters)"

        def check(name: str, ok: bool, allowed: str) -> None:
            if not ok:
                out.append(f"{name}={shown(getattr(self, name))} (allowed: {allowed})")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            # an int of any size is finite (math.isfinite would overflow converting a huge one); a float must not be nan/inf
            return is_int(v) or (isinstance(v, float) and math.isfinite(v))

        def is_path(v: Any) -> bool:
            return isinstance(v, os.PathLike) or (isinstance(v, str) and bool(v.strip()))

        def int_in(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            check(name, is_int(v) and lo <= v <= hi, f"an integer {lo}..{hi}")

        def num_in(name: str, lo: float, hi: float, lo_open: bool = False) -> None:
            v = getattr(self, name)
            ok = is_num(v) and (v > lo if lo_open else v >= lo) and v <= hi
            check(name, ok, f"a number {'>' if lo_open else '>='} {lo:g} and <= {hi:g}")

        int_in("seed", 0, 2**32 - 1)
        int_in("n_source", 100, 10_000_000)
        int_in("n_target", 100, 10_000_000)
        num_in("val_frac", 0.0, 0.5, lo_open=True)
        num_in("test_frac", 0.0, 0.5, lo_open=True)
        fracs_ok = all(is_num(v) and 0 < v <= 0.5 for v in (self.val_frac, self.test_frac))  # their sum cannot overflow
        if fracs_ok and self.val_frac + self.test_frac >= 0.8:
            out.append(f"val_frac+test_frac={self.val_frac + self.test_frac:g} (allowed: < 0.8, training needs the rest)")
        check("hidden", isinstance(self.hidden, (tuple, list)) and 1 <= len(self.hidden) <= 4
              and all(is_int(h) and 1 <= h <= 4096 for h in self.hidden), "1 to 4 layer sizes, each 1..4096")
        num_in("dropout", 0.0, 0.9)
        int_in("epochs_pretrain", 1, 1000)
        int_in("epochs_finetune", 1, 1000)
        int_in("batch_size", 1, 65_536)
        int_in("finetune_batch_size", 1, 65_536)
        num_in("lr", 0.0, 1.0, lo_open=True)
        num_in("finetune_lr", 0.0, 1.0, lo_open=True)
        int_in("patience", 1, 1000)
        num_in("lambda_", 0.0, 100.0)
        # looser than this and the gate would pass a visibly different model
        num_in("atol", 0.0, 1e-2)
        num_in("rtol", 0.0, 1e-1)
        int_in("opset", *_OPSETS)
        check("model_name", isinstance(self.model_name, str) and bool(_NAME_RE.match(self.model_name)),
              "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters")
        check("model_version", self.model_version is None or (isinstance(self.model_version, str) and bool(_VERSION_RE.match(self.model_version))),
              "None or 1-64 of A-Z a-z 0-9 . _ -")
        num_in("min_gpu_memory_gib", 0.0, 1024.0)
        int_in("max_batch_size", 1, 1_000_000)
        if self.torch_threads is not None:
            int_in("torch_threads", 1, 1024)
        check("label", isinstance(self.label, str) and bool(self.label), "a column name")
        check("task", self.task in TASKS, "classification, regression or embedding")
        if self.task == "embedding" and self.source_model is None:
            out.append("task='embedding' (allowed: with source_model, a Hugging Face encoder; tables train classification or regression)")
        check("model", self.model in ("mlp", "transformer"), "mlp or transformer")
        int_in("d_model", 4, 1024)
        int_in("n_heads", 1, 64)
        int_in("n_layers", 1, 12)
        if is_int(self.d_model) and is_int(self.n_heads) and self.n_heads > 0 and self.d_model % self.n_heads:
            out.append(f"d_model={shown(self.d_model)} (allowed: a multiple of n_heads={shown(self.n_heads)})")
        check("strategy", self.strategy in STRATEGIES, "full, head, adapter or lora")
        int_in("adapter_rank", 1, 256)
        check("consistency", self.consistency in CONSISTENCY, "mse or kd")
        num_in("temperature", 0.0, 100.0, lo_open=True)
        if self.consistency == "kd" and self.task in ("regression", "embedding"):
            out.append(f"consistency='kd' (allowed: mse for {self.task}; kd needs class probabilities)")
        if self.consistency == "mse" and is_num(self.temperature) and self.temperature != 1.0:
            out.append(f"temperature={shown(self.temperature)} (allowed: 1.0 with consistency mse, where it has no effect; set consistency: kd)")
        int_in("max_categories", 2, 10_000)
        check("drop_columns", isinstance(self.drop_columns, (tuple, list)) and all(isinstance(c, str) for c in self.drop_columns),
              "a list of column names")
        for flag in ("compare", "quantize", "report"):
            check(flag, isinstance(getattr(self, flag), bool), "true or false")
        num_in("min_agreement", 0.0, 1.0)
        for name in ("source_csv", "target_csv"):
            check(name, getattr(self, name) is None or is_path(getattr(self, name)), "a file path (CSV or Parquet), or s3:// / gs:// with --remote")
        if self.source_model is None and (self.source_csv is None) != (self.target_csv is None):
            out.append(f"source_csv={shown(self.source_csv)}, target_csv={shown(self.target_csv)} "
                       "(allowed: both set, or neither to generate the sample)")
        check("source_model", self.source_model is None or is_path(self.source_model),
              "a Hugging Face folder, a weights file (.safetensors or .pt) with model_factory, or an .onnx file")
        check("model_factory", self.model_factory is None or (isinstance(self.model_factory, str)
                                                              and bool(_FACTORY_RE.match(self.model_factory))),
              "package.module:function")
        if self.model_factory is not None and self.source_model is None:
            out.append(f"model_factory={shown(self.model_factory)} (allowed: with source_model, the weights the factory's network loads)")
        check("text_column", isinstance(self.text_column, str) and bool(self.text_column), "a column name")
        int_in("max_length", 2, 65_536)
        check("text_pooling", self.text_pooling is None or self.text_pooling in POOLING, "mean or mean_normalized")
        if self.text_lr is not None:
            num_in("text_lr", 0.0, 1.0, lo_open=True)
        num_in("text_scratch_lr", 0.0, 1.0, lo_open=True)
        int_in("text_batch_size", 1, 65_536)
        int_in("text_epochs", 1, 1000)
        int_in("text_scratch_epochs", 1, 1000)
        check("remote_image", isinstance(self.remote_image, str) and bool(self.remote_image.strip()), "a container image URI")
        for name in ("remote_instance_type", "remote_region", "remote_project", "remote_role_arn", "remote_output_uri"):
            check(name, getattr(self, name) is None or (isinstance(getattr(self, name), str) and bool(getattr(self, name).strip())),
                  "text, or leave it out for the default")
        return out

    def validate(self) -> None:
        """Raise one :class:`ConfigError` listing every out-of-range value."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid pipeline config: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        doc = asdict(self)
        for key in ("source_csv", "target_csv", "source_model"):
            doc[key] = None if doc[key] is None else str(doc[key])
        doc["hidden"] = list(doc["hidden"])
        doc["drop_columns"] = list(doc["drop_columns"])
        return doc


class ConfigFileError(ValueError):
    """The config file cannot be read or names something unknown; the message says which key and the fix."""


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(choices)})"


# A pipeline config is a few dozen lines; anything this big is the wrong file.
MAX_CONFIG_BYTES = 1 << 20
def _read_text(path: Path) -> str:
    """The config file's text; :class:`ConfigFileError` for anything but a readable, modest UTF-8 file."""
    from lepton_cdk.contract import ContractError
    from lepton_cdk.contract.files import read_file_bytes

    try:
        # refuses a folder, a FIFO (which would block forever), an unreadable or oversized file, each in one line
        data = read_file_bytes(path, what="config file", fix="pass a YAML or TOML file to --config", limit=MAX_CONFIG_BYTES,
                               missing=f"config file not found: {path}; check the path given to --config")
    except ContractError as exc:
        raise ConfigFileError(str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config into PipelineConfig field overrides."""
    path = Path(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigFileError(f"config file {path} must end in .yaml, .yml or .toml; rename it")
    try:
        doc = tomllib.loads(text) if suffix == ".toml" else load_yaml(text, f"config file {path}", error=ConfigFileError)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ConfigFileError(f"config file {path} is not valid {suffix[1:].upper()} ({detail}); fix the syntax") from None
    except RecursionError:
        raise ConfigFileError(f"config file {path} nests lists or mappings too deeply to read; a pipeline config is two levels deep") from None
    except ConfigFileError:
        raise  # load_yaml's own one line (aliases, recursion, repeated keys)
    except ValueError as exc:  # an integer with more digits than Python converts
        reason = str(exc).split(";")[0].strip()  # not Python's advice to call sys.set_int_max_str_digits()
        raise ConfigFileError(f"config file {path} holds a value that cannot be read ({reason}); fix that value") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigFileError(f"config file {path} must hold sections ({', '.join(_SECTIONS)}), not a {type(doc).__name__}")
    overrides: dict[str, Any] = {}
    for section, body in doc.items():
        if section not in _SECTIONS:
            raise ConfigFileError(f"config file {path}: unknown section {section!r}{_suggest(str(section), _SECTIONS)}; fix the name")
        if not isinstance(body, dict):
            raise ConfigFileError(f"config file {path}: section {section!r} must be a mapping of keys to values")
        known = sorted(k for s, k in KEYS if s == section)
        for key, value in body.items():
            if (section, key) not in KEYS:
                raise ConfigFileError(f"config file {path}: unknown key {section}.{key}{_suggest(str(key), known)}; fix the name")
            field = KEYS[(section, key)]
            if field in _TUPLES and isinstance(value, list):
                value = tuple(value)
            if field in ("source_csv", "target_csv", "source_model") and isinstance(value, str) and value and "://" not in value:
                value = (path.parent / value) if not Path(value).is_absolute() else Path(value)
            overrides[field] = value
    return overrides


def config_from_json(text: str) -> dict[str, Any]:
    """PipelineConfig field overrides from :meth:`PipelineConfig.to_dict` JSON (what a remote job carries in
    ``LEPTON_PIPELINE_CONFIG``); ``null`` values are left out."""

    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"LEPTON_PIPELINE_CONFIG holds {len(text):,} characters, more than {MAX_CONFIG_BYTES:,}; unset it or pass --config")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"LEPTON_PIPELINE_CONFIG is not valid JSON ({exc.msg}); unset it or pass --config") from None
    except RecursionError:
        raise ConfigFileError("LEPTON_PIPELINE_CONFIG nests arrays or objects too deeply to read; unset it or pass --config") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        reason = str(exc).split(";")[0].strip()
        raise ConfigFileError(f"LEPTON_PIPELINE_CONFIG holds a value that cannot be read ({reason}); unset it or pass --config") from None
    if not isinstance(doc, dict):
        raise ConfigFileError("LEPTON_PIPELINE_CONFIG must be a JSON object of config fields; unset it or pass --config")
    fields = sorted(f.name for f in dataclasses.fields(PipelineConfig))
    for key in doc:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the fields are the \"config\" keys `lepton pipeline run --dry-run` prints"
            raise ConfigFileError(f"LEPTON_PIPELINE_CONFIG has unknown field {key!r} ({hint}); fix the name or unset it")
    return {k: tuple(v) if k in _TUPLES and isinstance(v, list) else v for k, v in doc.items() if v is not None}


def resolve_config(config_file: str | Path | None = None, *, config_json: str | None = None, **flags: Any) -> Any:
    """The validated :class:`PipelineConfig` from a config file or a JSON config
    (``config_json``, used when there is no file) and CLI flags.

    Flags that are ``None`` are not given; given flags win over the file.
    Raises :class:`ConfigFileError` or :class:`~model_pipeline.pipeline.ConfigError`.
    """

    if config_file is not None:
        overrides = read_config_file(config_file)
    else:
        overrides = config_from_json(config_json) if config_json else {}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    for key in ("source_csv", "target_csv", "source_model"):
        value = overrides.get(key)
        if isinstance(value, str) and "://" not in value:
            overrides[key] = Path(value)
    try:
        config = PipelineConfig(**overrides)
    except TypeError as exc:  # a wrong type the dataclass itself cannot take
        raise ConfigFileError(f"config values do not fit the pipeline ({exc}); check the config file") from None
    config.validate()
    return config
