"""Pipeline configuration files: YAML or TOML, in sections, checked before any work.

A file maps onto :class:`model_pipeline.pipeline.PipelineConfig`::

    data:
      source: data/source.csv      # CSV or Parquet; omit both to generate the bundled sample
      target: data/target.csv
      label: default
      task: classification         # or regression
      drop_columns: [customer_id]
    model:
      kind: mlp                    # or transformer
      hidden: [64, 32]
    train:
      strategy: adapter            # full | head | adapter
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
import tomllib
from pathlib import Path
from typing import Any

import yaml

from lepton_cdk.yaml_documents import MAX_YAML_NODES, load_yaml  # noqa: F401 - MAX_YAML_NODES re-exported for callers

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
            if field in ("source_csv", "target_csv") and isinstance(value, str) and value and "://" not in value:
                value = (path.parent / value) if not Path(value).is_absolute() else Path(value)
            overrides[field] = value
    return overrides


def config_from_json(text: str) -> dict[str, Any]:
    """PipelineConfig field overrides from :meth:`PipelineConfig.to_dict` JSON (what a remote job carries in
    ``LEPTON_PIPELINE_CONFIG``); ``null`` values are left out."""
    from .pipeline import PipelineConfig

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
    """The validated :class:`~model_pipeline.pipeline.PipelineConfig` from a config file or a JSON config
    (``config_json``, used when there is no file) and CLI flags.

    Flags that are ``None`` are not given; given flags win over the file.
    Raises :class:`ConfigFileError` or :class:`~model_pipeline.pipeline.ConfigError`.
    """
    from .pipeline import PipelineConfig

    if config_file is not None:
        overrides = read_config_file(config_file)
    else:
        overrides = config_from_json(config_json) if config_json else {}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    for key in ("source_csv", "target_csv"):
        value = overrides.get(key)
        if isinstance(value, str) and "://" not in value:
            overrides[key] = Path(value)
    try:
        config = PipelineConfig(**overrides)
    except TypeError as exc:  # a wrong type the dataclass itself cannot take
        raise ConfigFileError(f"config values do not fit the pipeline ({exc}); check the config file") from None
    config.validate()
    return config
