"""Text models: a Hugging Face folder in, LoRA, export with dynamic batch and sequence, the parity gate, and a
manifest whose tokenizer artifact serves raw strings.

Every model here is made in the test from a transformers config (random weights, a ~120-token vocabulary) and a
tokenizer built with the ``tokenizers`` library: nothing is downloaded. Training is a few epochs on ~100 texts.
"""

from __future__ import annotations

import copy
import csv
import json
import random
import string
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lepton_cdk.contract import ContractError, TensorSpec, TextSignature, read_manifest
from lepton_cdk.serve.text import TextEncoder, TextInputError
from model_pipeline.config import PipelineConfig
from model_pipeline.models import LoRALinear
from model_pipeline.pipeline import run_pipeline
from model_pipeline.text_models import TextModel, add_text_adapters
from model_pipeline.validate import ParityError, check_text_parity

TOPICS = {"computers": "server kernel code bug compile disk memory cpu network linux".split(),
          "science": "atom star physics cell energy gene orbit quantum lab theory".split(),
          "work": "boss meeting salary office deadline project email desk team job".split()}
FILLER = "the a of to and in is it that for on with as was at by this be are from".split()


def build_tokenizer():
    """A WordPiece tokenizer over the topic words, letters and digits (lowercasing, [CLS] ... [SEP])."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    chars = string.ascii_lowercase + string.digits
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *("##" + c for c in chars), *string.punctuation]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tokenizer


def write_hf_folder(folder: Path, *, kind: str = "classifier", labels: tuple[str, ...] = tuple(sorted(TOPICS)),
                    sentence_transformers: bool = False, seed: int = 0) -> Path:
    """A tiny BERT saved with save_pretrained (config.json + model.safetensors) and its tokenizer.json.

    ``kind``: ``classifier`` (BertForSequenceClassification with ``labels``) or ``encoder`` (BertModel). With
    ``sentence_transformers`` the folder also says: mean pooling, then Normalize (as all-MiniLM-L6-v2 does).
    """
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tokenizer = build_tokenizer()
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if kind == "classifier" else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    if sentence_transformers:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return folder


def write_texts(path: Path, n: int, seed: int, *, topic_share: float = 0.6, column: str = "message", label: str = "topic",
                regression: bool = False) -> Path:
    """``n`` labelled texts: each mixes words of its topic (share ``topic_share``) with filler words."""
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([column, label])
        for _ in range(n):
            topic = rng.choice(sorted(TOPICS))
            words = [rng.choice(TOPICS[topic]) if rng.random() < topic_share else rng.choice(FILLER) for _ in range(rng.randint(3, 14))]
            value = float(sum(w in TOPICS["science"] for w in words)) if regression else topic
            writer.writerow([" ".join(words), value])
    return path


def text_config(tmp: Path, folder: Path, **overrides) -> PipelineConfig:
    base = dict(source_model=folder, target_csv=write_texts(tmp / "target.csv", 120, seed=2), label="topic", text_column="message",
                text_epochs=3, text_scratch_epochs=2, patience=3, model_name="tiny-text", report=False)
    return PipelineConfig(**(base | overrides))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A classifier folder migrated with LoRA, with the baselines, into a fresh folder (once per module)."""
    tmp = tmp_path_factory.mktemp("lora")
    folder = write_hf_folder(tmp / "bert-topics")
    config = text_config(tmp, folder, strategy="lora", adapter_rank=2, text_lr=5e-3, report=True)
    lines: list[str] = []
    result = run_pipeline(config, tmp / "out", progress=lines.append)
    return config, folder, result, lines


# -- the text encoder: one function from strings to graph inputs -----------------------------------------------------


def _signature(max_length: int = 8, names=("input_ids", "attention_mask", "token_type_ids")) -> TextSignature:
    return TextSignature(input="text", tokenizer="tokenizer", max_length=max_length,
                         graph_inputs=[TensorSpec(n, "int64", ["batch", "sequence"]) for n in names])


def test_text_encoder_pads_to_the_longest_truncates_at_max_length_and_decodes_utf8_bytes():
    encoder = TextEncoder.from_json(build_tokenizer().to_str(), _signature(max_length=8))
    feeds = encoder.encode(["server", "the kernel code bug compile disk memory cpu network linux", "café".encode()])
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(a.dtype == np.int64 and a.shape == (3, 8) for a in feeds.values())  # the long text is cut at 8 tokens
    assert feeds["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]  # [CLS] server [SEP], then padding
    assert feeds["input_ids"][0, 3:].tolist() == [0] * 5, "padded with [PAD] (id 0)"
    assert feeds["input_ids"][1, -1] == encoder.tokenizer.token_to_id("[SEP]"), "truncation keeps the special tokens"
    assert encoder.token_counts(["the kernel code bug compile disk memory cpu network linux"]) == [12]
    assert [a.shape for a in encoder.encode([]).values()] == [(0, 0)] * 3


@pytest.mark.parametrize(("texts", "message"), [
    (["ok", 3], "text #1 is a int, not a string"),
    ([b"\xff\xfe"], "text #0 is not UTF-8"),
    ("one string", "not one string"),
])
def test_text_encoder_refuses_what_is_not_text_in_one_line(texts, message):
    encoder = TextEncoder.from_json(build_tokenizer().to_str(), _signature())
    with pytest.raises(TextInputError, match=message):
        encoder.encode(texts)


def test_text_encoder_refuses_a_graph_input_no_tokenizer_makes_and_a_non_text_manifest():
    with pytest.raises(ContractError, match="pixel_values"):
        TextEncoder.from_json(build_tokenizer().to_str(), _signature(names=("input_ids", "pixel_values")))
    with pytest.raises(ContractError, match="not a Hugging Face tokenizers JSON file"):
        TextEncoder.from_json("{}", _signature())


# -- a Hugging Face folder in, LoRA, export, parity, the manifest ----------------------------------------------------


def test_the_manifest_is_schema_1_2_with_the_tokenizer_as_a_checksummed_artifact(lora_run):
    config, folder, result, _ = lora_run
    manifest = read_manifest(result.manifest_path, verify=True)
    assert manifest.schema_version == "1.2.0" and manifest.task == "multiclass-classification"
    assert [a.name for a in manifest.artifacts] == ["model", "tokenizer", "metrics", "report"]
    text = manifest.signature.text
    assert text is not None and text.tokenizer == "tokenizer" and text.input == "text"
    assert text.max_length == 64, "128 asked for, capped at the model's 64 positions"
    assert (text.truncation, text.padding, text.lowercase, text.pooling) == ("longest_first", "longest", True, None)
    assert [(t.name, t.dtype, t.shape) for t in text.graph_inputs] == [
        (n, "int64", ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    assert [(t.name, t.dtype, t.shape, t.columns) for t in manifest.signature.inputs] == [("text", "string", ["batch"], ["message"])]
    assert [(t.name, t.shape) for t in manifest.signature.outputs] == [("logits", ["batch", 3]), ("probabilities", ["batch", 3])]
    assert manifest.signature.labels == sorted(TOPICS)
    from lepton_cdk.contract import digest_file

    assert manifest.lineage.source_model_sha256 == digest_file(folder / "model.safetensors").sha256
    assert manifest.metrics["source"]["head"] == "source", "the folder's labels name every target class: its head is kept"


def test_what_the_manifest_serves_is_what_was_gated_raw_strings_in(lora_run):
    _, _, result, _ = lora_run
    manifest = read_manifest(result.manifest_path, verify=True)
    encoder = TextEncoder.from_manifest(manifest)  # the tokenizer artifact, as a server loads it
    session = ort.InferenceSession(str(result.paths["model"]), providers=["CPUExecutionProvider"])
    texts = ["server kernel crashed", "the boss moved the meeting", "quantum orbit of a star " * 30]
    feeds = encoder.encode(texts)
    logits, probs = session.run(["logits", "probabilities"], feeds)
    with torch.no_grad():
        want = result.model(*(torch.from_numpy(feeds[n]) for n in ("input_ids", "attention_mask", "token_type_ids")))
    np.testing.assert_allclose(logits, want[0].numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert feeds["input_ids"].shape == (3, 64), "the long text is truncated at max_length"


@pytest.mark.parametrize(("batch", "length"), [(1, 2), (1, 17), (5, 3), (7, 64)])
def test_the_graph_takes_any_batch_size_and_sequence_length(lora_run, batch, length):
    _, _, result, _ = lora_run
    session = ort.InferenceSession(str(result.paths["model"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(batch * 100 + length)
    ids = rng.integers(5, 60, size=(batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, max(1, length // 2):] = 0
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    logits, _ = session.run(["logits", "probabilities"], feeds)
    with torch.no_grad():
        want = result.model(*(torch.from_numpy(feeds[n]) for n in ("input_ids", "attention_mask", "token_type_ids")))[0]
    assert logits.shape == (batch, 3)
    np.testing.assert_allclose(logits, want.numpy(), atol=1e-5, rtol=1e-4)


def test_the_parity_gate_ran_at_several_batch_sizes_and_lengths_and_records_each_output(lora_run):
    config, _, result, _ = lora_run
    parity = result.manifest.parity
    assert parity.passed and set(parity.per_output) == {"logits", "probabilities"}
    assert all(v["max_abs_diff"] <= config.atol for v in parity.per_output.values())
    shapes = result.metrics["parity_shapes"]
    assert {b for b, _ in shapes} >= {1, 4} and len({s for _, s in shapes}) >= 4
    assert [64] == [s for b, s in shapes if b > 10], "the whole held-out set in one batch, padded to max_length by the long probe"


def test_the_parity_gate_is_fatal_when_onnx_and_pytorch_disagree(lora_run, tmp_path):
    _, _, result, _ = lora_run
    manifest = read_manifest(result.manifest_path, verify=True)
    changed = copy.deepcopy(result.model)
    with torch.no_grad():
        changed.model.backbone.classifier.bias.add_(0.01)  # a model the file no longer reproduces
    with pytest.raises(ParityError, match="output 'logits' differs between onnxruntime and PyTorch by up to 0.01"):
        check_text_parity(changed, result.paths["model"], TextEncoder.from_manifest(manifest), ["server kernel", "boss"])


def test_lora_adapters_are_merged_into_plain_weights_and_train_few_parameters(lora_run):
    config, folder, result, _ = lora_run
    model = result.model.model
    assert not [m for m in model.modules() if isinstance(m, LoRALinear)], "serving sees one plain model"
    rows = {f"{r['model']} {r['lambda']}": r for r in result.metrics["comparison"]}
    total = rows["from_scratch None"]["compute"]["trainable_params"]
    lora = rows["transfer (lora) 0.1"]["compute"]["trainable_params"]
    assert total == sum(p.numel() for p in model.parameters())
    assert 0 < lora < total / 5, (lora, total)
    assert {"source_only None", "from_scratch None", "transfer (lora) 0.1", "transfer (lora) 0.0"} == set(rows)
    from transformers import BertForSequenceClassification

    source = BertForSequenceClassification.from_pretrained(folder)
    query = model.backbone.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.allclose(query, source.bert.encoder.layer[0].attention.self.query.weight), "the adapters moved the base weights"
    assert torch.equal(model.backbone.bert.embeddings.word_embeddings.weight, source.bert.embeddings.word_embeddings.weight), \
        "LoRA leaves everything but the Linear layers as it was"


def test_lora_starts_as_the_source_model_and_merging_keeps_what_it_computes(tmp_path):
    from transformers import BertModel

    folder = write_hf_folder(tmp_path / "enc", kind="encoder")
    model = TextModel(BertModel.from_pretrained(folder).eval(), mode="pooled", token_type_ids=True)
    encoder = TextEncoder.from_json(build_tokenizer().to_str(), _signature(16))
    feeds = {k: torch.from_numpy(v) for k, v in encoder.encode(["server kernel", "the boss of the lab"]).items()}
    before = model(**feeds)
    adapted = copy.deepcopy(model)
    add_text_adapters(adapted, rank=2)
    assert torch.equal(adapted(**feeds), before), "B starts at zero"
    for m in adapted.modules():
        if isinstance(m, LoRALinear):
            torch.nn.init.normal_(m.lora_b)
    moved = adapted(**feeds)
    from model_pipeline.models import merge_adapters

    merge_adapters(adapted)
    torch.testing.assert_close(adapted(**feeds), moved, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(moved, before)


def test_progress_names_the_recipe_stages_in_order(lora_run):
    _, _, result, lines = lora_run
    firsts = []
    for line in lines:
        stage = line.split(":", 1)[0]
        if stage not in firsts:
            firsts.append(stage)
    assert firsts[:3] == ["data", "load_source", "fine_tune"] and firsts[-4:] == ["export", "parity", "report", "done"]
    assert list(result.timings)[:2] == ["load_data", "load_source"] and list(result.timings)[-1] == "publish"


# -- the other ways a text source is used ----------------------------------------------------------------------------


def test_head_only_fine_tuning_leaves_the_encoder_as_it_was(tmp_path):
    folder = write_hf_folder(tmp_path / "bert")
    result = run_pipeline(text_config(tmp_path, folder, strategy="head", compare=False, text_lr=1e-2), tmp_path / "out",
                          progress=lambda _: None)
    from transformers import BertForSequenceClassification

    source = BertForSequenceClassification.from_pretrained(folder)
    shipped = result.model.model.backbone
    assert all(torch.equal(p, source.bert.state_dict()[n]) for n, p in shipped.bert.state_dict().items())
    assert not torch.equal(shipped.classifier.weight, source.classifier.weight)
    row = next(r for r in result.metrics["comparison"] if r["model"] == "transfer (head)")
    assert row["compute"]["trainable_params"] == 32 * 3 + 3


def test_a_new_head_is_pretrained_on_the_source_data_when_the_labels_differ(tmp_path):
    folder = write_hf_folder(tmp_path / "bert", labels=("LABEL_0", "LABEL_1"))  # a binary model: no topic names
    config = text_config(tmp_path, folder, source_csv=write_texts(tmp_path / "source.csv", 120, seed=1, topic_share=0.8),
                         compare=False, text_lr=1e-3, epochs_pretrain=5)
    result = run_pipeline(config, tmp_path / "out", progress=lambda _: None)
    source = result.metrics["source"]
    assert (source["head"], result.metrics["consistency_on"]) == ("probe", "output")
    assert result.manifest.signature.labels == sorted(TOPICS)
    assert "source_only" in result.metrics["target_test"] and result.metrics["source_test"]["rows"] > 0
    assert result.metrics["compute"]["source_pretrain"]["trainable_params"] == 32 * 3 + 3, "a linear probe: only the head trained"


def test_a_new_head_without_source_data_anchors_the_encoders_features(tmp_path):
    folder = write_hf_folder(tmp_path / "bert", labels=("positive", "negative"))
    result = run_pipeline(text_config(tmp_path, folder, compare=False, text_epochs=1), tmp_path / "out", progress=lambda _: None)
    assert (result.metrics["source"]["head"], result.metrics["consistency_on"]) == ("new", "features")
    assert "source_only" not in result.metrics["target_test"], "a random head says nothing about the source model"
    assert result.metrics["l_trans"] >= 0


def test_regression_from_an_encoder_predicts_on_the_labels_scale(tmp_path):
    folder = write_hf_folder(tmp_path / "enc", kind="encoder")
    target = write_texts(tmp_path / "reg.csv", 120, seed=3, label="science_words", regression=True)
    config = text_config(tmp_path, folder, target_csv=target, label="science_words", task="regression", compare=False, text_lr=1e-3)
    result = run_pipeline(config, tmp_path / "out", progress=lambda _: None)
    assert result.manifest.task == "regression"
    assert [(t.name, t.shape) for t in result.manifest.signature.outputs] == [("prediction", ["batch", 1])]
    scale_mean, _ = result.model.target_mean.item(), result.model.target_std.item()
    assert scale_mean > 0.5, "the label's mean is baked into the graph, so predictions are on its scale"
    assert set(result.metrics["target_test"]["fine_tuned"]) >= {"rmse", "mae", "r2"}


@pytest.fixture(scope="module")
def embedding_runs(tmp_path_factory):
    """An embedding model (sentence-transformers layout, normalised) migrated at lambda 0 and at lambda 50."""
    tmp = tmp_path_factory.mktemp("embed")
    folder = write_hf_folder(tmp / "minilm-like", kind="encoder", sentence_transformers=True)
    runs = {}
    for lam in (0.0, 50.0):
        config = text_config(tmp, folder, task="embedding", lambda_=lam, compare=False, text_epochs=3, text_lr=2e-3,
                             model_name=f"embed-{int(lam)}")
        runs[lam] = run_pipeline(config, tmp / f"out-{int(lam)}", progress=lambda _: None)
    return runs


def test_an_embedding_model_exports_normalised_mean_pooled_embeddings(embedding_runs):
    result = embedding_runs[50.0]
    manifest = read_manifest(result.manifest_path, verify=True)
    assert manifest.task == "embedding" and manifest.signature.text.pooling == "mean_normalized"
    assert [(t.name, t.shape) for t in manifest.signature.outputs] == [("embedding", ["batch", 32])]
    session = ort.InferenceSession(str(result.paths["model"]), providers=["CPUExecutionProvider"])
    (emb,) = session.run(["embedding"], TextEncoder.from_manifest(manifest).encode(["server kernel", "boss", ""]))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embeddings_report_index_compatibility_and_the_consistency_term_keeps_it(embedding_runs):
    metrics = {lam: r.metrics["target_test"] for lam, r in embedding_runs.items()}
    source = metrics[0.0]["source_only"]
    assert (source["mean_cosine"], source["recall_at_10"]) == pytest.approx((1.0, 1.0)), "the old model finds its own neighbours"
    for m in metrics.values():
        assert 0 <= m["fine_tuned"]["knn_accuracy"] <= 1 and -1 <= m["fine_tuned"]["mean_cosine"] <= 1
    # the method's claim for a vector index: weighting L_trans keeps new embeddings usable with the old index
    assert metrics[50.0]["fine_tuned"]["mean_cosine"] > metrics[0.0]["fine_tuned"]["mean_cosine"]
    assert metrics[50.0]["fine_tuned"]["recall_at_10"] >= metrics[0.0]["fine_tuned"]["recall_at_10"]


def test_the_text_column_missing_is_one_line_and_nothing_is_written(tmp_path):
    from model_pipeline.data import DataError

    folder = write_hf_folder(tmp_path / "bert")
    with pytest.raises(DataError, match=r"target data .* has no text column 'body' \(columns: message, topic\); pass the right one "
                                        "with --text-column COLUMN"):
        run_pipeline(text_config(tmp_path, folder, text_column="body"), tmp_path / "out", progress=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_the_folder_is_read_offline_and_never_runs_its_code(tmp_path):
    folder = write_hf_folder(tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "modeling_evil.Evil"}}))
    from model_pipeline.sources import SourceModelError, resolve_source

    with pytest.raises(SourceModelError, match="never runs a model folder's code"):
        resolve_source(replace(text_config(tmp_path, folder)))
