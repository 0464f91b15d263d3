"""Typed configuration: one docstring per field, loaded from YAML and validated with messages that name the field.

Every YAML file in `configs/` maps onto `Config`; unknown keys are errors, so a typo never silently falls back to a
default. The field docstrings double as help text (pydantic keeps them as descriptions for the UI's forms).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PII_KINDS = ("email", "phone", "card", "iban", "national_id")
_NAMED_ADAPTER = re.compile(r"^(ft|ft_rag):[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # ft:A, ft_rag:A


class ConfigError(ValueError):
    """A config file or value is invalid; the message lists every problem with its field path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class ModelConfig(_Section):
    base: str = "smollm2-135m-instruct"
    """Base chat model: a packaged short name, a local Hugging Face folder, a .gguf file, or a hub id."""
    embedder: str = "all-minilm-l6-v2"
    """Sentence embedder for retrieval and similarity: a packaged short name or a local sentence-transformers folder."""
    embedder_runtime: Literal["auto", "torch", "onnx"] = "auto"
    """What embeds queries: `onnx` is ONNX Runtime on the CPU (the embedder exported once into the cache; a query
    2.3x faster than through PyTorch), `torch` the sentence-transformers model; `auto` is onnx on a CPU where
    onnxruntime is installed. Index builds embed with PyTorch either way."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where models run. `auto` picks CUDA with bf16 when a GPU is present, else CPU with fp32."""
    cpu_precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Weights of the chat engine on a CPU: `auto` is bf16 where the CPU has native bf16 dot products (AVX512-BF16,
    AMX), else fp32. Answers can differ between the two; each answer records its precision."""


class SplitRatios(_Section):
    train: float = Field(0.8, ge=0, le=1)
    """Share of QA groups used for training."""
    val: float = Field(0.1, ge=0, le=1)
    """Share of QA groups used for validation during fine-tuning."""
    test: float = Field(0.1, ge=0, le=1)
    """Share of QA groups held out for evaluation; never seen in training."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitRatios:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:g}")
        return self


class PrepareConfig(_Section):
    seed: int = 13
    """Seed of the train/val/test split; the same seed and inputs give the same split."""
    split: SplitRatios = SplitRatios()
    """Split ratios, applied to groups of near-duplicate questions and stratified by question type."""
    shingle_words: int = Field(5, ge=1, le=20)
    """Words per shingle when comparing documents for near-duplicates."""
    near_dup_threshold: float = Field(0.5, gt=0, le=1)
    """Documents whose shingle Jaccard similarity is at least this are near-duplicates; the later one is dropped."""
    question_group_threshold: float = Field(0.55, gt=0, le=1)
    """Questions (or paraphrases) at least this similar (character 4-gram Jaccard) share a group and a split."""
    leakage_threshold: float = Field(0.55, gt=0, le=1)
    """A test question at least this similar to a training question is reported as leakage."""
    boilerplate_min_docs: int = Field(3, ge=2)
    """A line repeated in at least this many documents (and the share below) is boilerplate and removed."""
    boilerplate_min_fraction: float = Field(0.1, gt=0, le=1)
    """Minimum share of documents a repeated line must appear in to count as boilerplate."""
    redact: list[Literal["email", "phone", "card", "iban", "national_id"]] = list(PII_KINDS)
    """PII kinds replaced by typed placeholders such as `[EMAIL]` in the corpus and the QA set."""
    min_doc_words: int = Field(5, ge=0)
    """Documents with fewer words after cleaning are skipped (reported in the quality report)."""
    passage_words: int = Field(180, ge=20)
    """Without a QA file: approximate length of the corpus passages turned into training examples."""


class FinetuneConfig(_Section):
    recipe: Literal["qa", "qa+docs", "paraphrase", "raft"] = "qa"
    """Training data: `qa` the train split's pairs; `qa+docs` plus corpus passages as continuation examples;
    `paraphrase` each pair also under every reworded question the QA file provides; `raft` each pair with retrieved
    sources in the RAG prompt (the gold chunk among distractors), which trains an adapter for the fine-tuned + RAG
    column (`runs/NAME/adapters/raft/` unless `--adapter` names another; needs the run's index)."""
    raft_distractors: int = Field(2, ge=1)
    """RAFT: retrieved chunks from other documents shown with each question, next to the gold chunk."""
    raft_no_gold_share: float = Field(0.2, ge=0, le=1)
    """RAFT: share of questions shown distractors only, so the adapter also learns to answer past useless sources."""
    system_prompt: str = "You are a helpful assistant. Answer briefly and only with facts you know."
    """System message of every training and chat prompt; the variants use the same one."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the LoRA path during training."""
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    """Names of the linear layers that get LoRA adapters."""
    learning_rate: float = Field(1e-3, gt=0)
    """Peak learning rate after warmup."""
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    """Share of the steps spent warming the learning rate up from 0; cosine decay follows."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay on the LoRA weights."""
    length_window: int = Field(0, ge=0)
    """0 (default) shuffles examples into batches, as most trainers do; N > 0 builds batches from windows of N
    batches' worth of shuffled examples sorted by length, so a batch holds examples of similar length. Every batch
    runs in pieces of similar length anyway (little padding either way), so windows gain 5-15% speed and cost 3% val
    loss. On the demo's 60 steps (2 CPU cores, two runs): 0 reached val loss 2.475 at 117-136 tokens/s, 32 2.548 at
    135-143."""
    epochs: float = Field(3.0, gt=0)
    """Passes over the training examples (the number of steps follows unless `max_steps` is set)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides `epochs`)."""
    batch_size: int = Field(8, ge=1)
    """Examples per micro-batch (run in pieces of similar length, so little compute goes to padding)."""
    gradient_accumulation: int = Field(1, ge=1)
    """Micro-batches per optimizer step."""
    max_length: int = Field(384, ge=16)
    """Longest example in tokens; longer ones are truncated from the end."""
    eval_every: int = Field(20, ge=1)
    """Evaluate on the val split every this many steps (and at the end)."""
    checkpoint_every: int = Field(20, ge=1)
    """Write a resumable checkpoint every this many steps."""
    patience: int = Field(3, ge=1)
    """Stop early after this many evaluations without a new best val loss."""
    spike_factor: float = Field(2.0, gt=1)
    """A train loss above this many times its moving average is reported as a spike."""
    spike_window: int = Field(10, ge=2)
    """Steps in the moving average used for spike detection."""
    overfit_evals: int = Field(2, ge=1)
    """Val loss rising for this many evaluations while train loss falls is reported as overfitting."""
    forgetting_warn_pct: float = Field(10.0, ge=0)
    """Warn when perplexity on the general-text probe rises by more than this percentage."""
    general_text: str | None = None
    """General prose for the forgetting probe; default: the shipped demo/general.txt."""
    replay_share: float = Field(0.0, ge=0, lt=0.5)
    """Share of the training examples that are windows of general prose (`replay_text`), every token learned, so the
    adapter keeps practising general language (replay against forgetting); 0 turns it off."""
    replay_text: str | None = None
    """General prose replayed when `replay_share` > 0; default: the first half of the forgetting probe's text,
    the probe then measuring on the second half only (never on what was replayed)."""
    seed: int = 13
    """Seed for LoRA initialisation, data order and dropout."""


class IndexConfig(_Section):
    chunk_tokens: int = Field(200, ge=16)
    """Longest chunk in embedder tokens (keep it under the embedder's limit, 256 for MiniLM)."""
    overlap_tokens: int = Field(40, ge=0)
    """Tokens of a section's previous chunk repeated at the start of the next one, so facts at a border survive."""
    index_type: Literal["auto", "flat", "hnsw"] = "auto"
    """`flat` exact inner-product search; `hnsw` approximate graph search; `auto` picks HNSW above `hnsw_above`."""
    hnsw_above: int = Field(50_000, ge=1)
    """With `auto`: chunk count above which the HNSW index is used."""
    hnsw_m: int = Field(24, ge=4)
    """HNSW neighbours per node: more gives better recall, more memory and slower builds."""
    hnsw_ef_construction: int = Field(60, ge=8)
    """HNSW candidate list size while building."""
    hnsw_ef_search: int = Field(32, ge=1)
    """HNSW candidate list size while searching: the recall/latency knob."""
    batch_size: int = Field(16, ge=1)
    """Chunks per embedding batch (per worker). On 2 CPU cores 16 measured fastest: 67 chunks/s, 50 with 64."""
    hybrid: bool = True
    """Fuse BM25 lexical ranks with dense ranks (reciprocal rank fusion); on the demo it lifts MRR 0.84 -> 0.90."""
    rrf_k: int = Field(60, ge=1)
    """Reciprocal rank fusion constant: a rank r contributes 1 / (rrf_k + r)."""
    top_k: int = Field(5, ge=1)
    """Chunks retrieved per question for the RAG variants."""

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IndexConfig:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        return self


class RemoteConfig(_Section):
    base_url: str
    """Root of an OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1` (vLLM, a hosted model, `serve-api`)."""
    model: str
    """The `model` field sent with each request."""
    api_key_env: str | None = None
    """Environment variable holding the API key (never the key itself in a config file)."""
    timeout_s: float = Field(120.0, gt=0)
    """Seconds to wait for the endpoint before the answer is recorded as failed."""


class ChatConfig(_Section):
    variants: list[str] = ["base", "ft", "rag", "ft_rag"]
    """Variants that answer each question: `base`, `prompt` (the base model shown `prompt_examples` training pairs),
    `ft`, `rag`, `ft_rag`, or `remote:NAME` (see `remotes`)."""
    max_new_tokens: int = Field(128, ge=1)
    """Longest answer in tokens, the same for every variant."""
    temperature: float = Field(0.0, ge=0)
    """0 decodes greedily; above 0 samples, with `seed`, so a turn can be repeated."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling mass when sampling."""
    seed: int = 0
    """Sampling seed; each variant draws from its own generator, so batching does not change its answer."""
    repetition_penalty: float = Field(1.0, ge=1)
    """Divides the scores of tokens the answer already used (1: off). The answer's own tokens only, not the
    prompt's, so a RAG answer can still quote its sources."""
    stop_on_repeat: bool = True
    """End an answer when a sentence or line repeats one it already gave (the repeat is dropped): small models
    otherwise loop to the token limit."""
    rag_chunks: int = Field(3, ge=1)
    """Retrieved chunks shown to the RAG variants as numbered sources."""
    prompt_examples: int = Field(3, ge=1, le=20)
    """Question-answer pairs of the train split shown to the `prompt` variant, those closest to the question."""
    remotes: dict[str, RemoteConfig] = {}
    """OpenAI-compatible endpoints that can take a column as `remote:NAME`."""

    @model_validator(mode="after")
    def _known_variants(self) -> ChatConfig:
        known = {"base", "prompt", "ft", "rag", "ft_rag"} | {f"remote:{name}" for name in self.remotes}
        unknown = [name for name in self.variants if name not in known and not _NAMED_ADAPTER.match(name)]
        if unknown:
            raise ValueError(
                f"unknown variant(s) {unknown}: use base, prompt, ft, ft:ADAPTER, rag, ft_rag, ft_rag:ADAPTER or "
                "remote:NAME from remotes"
            )
        return self


class HallucinationConfig(_Section):
    detector: str = "evidence"
    """Claim checker: `evidence` (offline: embedding similarity and checkable facts) or `nli` (needs `nli_model`)."""
    threshold: float = Field(0.5, ge=0, le=1)
    """A claim scoring at least this is likely unsupported (red in the arena), and an answer with such a claim is
    flagged. The score's model is fitted with both classes weighing the same, so 0.5 is where a claim is as likely
    one as the other (bench/hallucination.py reports precision and recall of the flag)."""
    aggregate: Literal["mean", "max", "noisy_or"] = "mean"
    """An answer's score from its claims': their mean (how much of the answer is unsupported), the worst claim, or
    the chance that any claim is unsupported: it ranks answers (`check`'s `hallucination_score`). Chosen on the fitting
    halves of bench/hallucination.py's sets: the mean ranks real answers far better (AUROC 0.890 against 0.785 for
    the worst claim), since a right answer often goes on with loosely supported extras, at a small cost on the
    constructed set (0.961 against 0.976 with context)."""
    retrieve_k: int = Field(3, ge=1)
    """Chunks retrieved from the index for the question and for each claim, added to any given context."""
    evidence_chunks: int = Field(3, ge=1)
    """Evidence chunks closest to a claim whose facts count as its support (and are listed with it)."""
    nli_model: str | None = None
    """Local folder of an NLI cross-encoder for the `nli` detector; nothing is downloaded."""


class RemotePrice(_Section):
    input_per_1k: float = Field(ge=0)
    """Price of 1,000 prompt tokens sent to the endpoint."""
    output_per_1k: float = Field(ge=0)
    """Price of 1,000 tokens the endpoint generates."""


class ReportConfig(_Section):
    metric: str = "token_f1"
    """The reference judge the decision rests on (any judge an eval stored: token_f1, key_facts, rouge_l, ...)."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """Level of every interval; a difference is significant when its corrected p-value is below 1 - confidence."""
    power: float = Field(0.8, gt=0.5, lt=1)
    """Power assumed when estimating how many more questions or votes would make a difference significant."""
    bootstrap_rounds: int = Field(2000, ge=100)
    """Resamples behind each interval of a mean or a paired difference."""
    preference_rounds: int = Field(200, ge=20)
    """Resamples of the votes behind the Bradley-Terry intervals."""
    currency: str = "USD"
    """Unit of the prices below, shown beside every cost."""
    cpu_hour: float | None = Field(None, ge=0)
    """Price of one hour of the CPU machine that trains and answers; no price leaves costs in hours only."""
    gpu_hour: float | None = Field(None, ge=0)
    """Price of one hour of the GPU machine, used for work that ran on a GPU."""
    remote_prices: dict[str, RemotePrice] = {}
    """Per remote endpoint (its name under `chat.remotes`), the price of its tokens."""
    rater_alpha_gap: float = Field(0.3, gt=0, le=2)
    """With three raters or more, a rater whose Krippendorff's alpha with the others is this far below the median of
    the rest (or below 0, no better than chance) is flagged in the report's rater agreement."""
    drop_flagged_raters: bool = False
    """Leave the flagged raters' ratings out of every human figure (votes, stars, flags), as arena operators filter
    anomalous voters; the report names who was left out."""


class LimitsConfig(_Section):
    question_chars: int = Field(4000, ge=1)
    """Longest question or chat message accepted (arena, `ask`, serve-api); longer gets a clear error."""
    history_turns: int = Field(8, ge=0)
    """Earlier turns of a conversation sent with a question; a longer history is refused (serve-api) or trimmed."""
    max_new_tokens: int = Field(1024, ge=1)
    """Most tokens one answer may be asked for (a request's `max_tokens` above it is refused)."""
    body_bytes: int = Field(1_000_000, ge=1024)
    """Largest serve-api request body."""
    json_depth: int = Field(64, ge=2)
    """Deepest nesting a JSON row or request body may have."""
    asks_per_rater: int = Field(1, ge=1)
    """Questions one rater may have generating at once in the arena; more wait for a clear message instead."""
    upload_file_bytes: int = Field(256 * 1024**2, ge=1)
    """Largest file an upload in the app may hold: each file, each member of a .zip (unpacked) and the .zip itself.
    For bigger files, put them on the machine and run `workbench prepare` there."""
    upload_total_bytes: int = Field(1024**3, ge=1)
    """Most bytes one upload may put in the workspace, .zip members counted unpacked (a zip bomb stops here)."""
    upload_files: int = Field(10_000, ge=1)
    """Most files one upload may hold, .zip members (and folders in them) included."""


class Config(_Section):
    model: ModelConfig = ModelConfig()
    """Which models to use and where they run."""
    prepare: PrepareConfig = PrepareConfig()
    """How `workbench prepare` cleans, deduplicates, redacts and splits the data."""
    finetune: FinetuneConfig = FinetuneConfig()
    """How `workbench finetune` trains the LoRA adapter."""
    index: IndexConfig = IndexConfig()
    """How `workbench index` chunks, embeds and indexes the corpus."""
    chat: ChatConfig = ChatConfig()
    """Which variants answer, and how they decode and retrieve."""
    hallucination: HallucinationConfig = HallucinationConfig()
    """How answers are checked for unsupported claims (`workbench check` and the judges)."""
    report: ReportConfig = ReportConfig()
    """What `workbench report` decides on, how sure it must be, and what compute and tokens cost."""
    limits: LimitsConfig = LimitsConfig()
    """How much one question, request or input row may hold (see README, Security)."""


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a YAML config; no path gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (see configs/ for examples)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict, source: str = "config") -> Config:
    """Validate a plain dict; every problem is reported at once, each with its dotted field path."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"{source}: {len(problems)} invalid setting(s):\n" + "\n".join(problems)) from None
