"""Zero-shot tagging with an open_clip model (CLIP, or SigLIP) over a fixed vocabulary.

Over 350 lines on purpose: one family adapter per file (CLIP and SigLIP share it), and a third of it
is the text-embedding cache and the three scoring modes, which only this family has.

Every vocabulary term is scored for every image, from the cosine of the image embedding and the
term's text embedding (the mean over the prompt templates, CLIP's prompt ensembling):
- "binary" (CLIP's default in model.toml): each term on its own, CLIP's softmax over just two
  prompts, the term's and a neutral one ("a photo of something"), at the model's logit scale:
      p(term) = exp(s cos_t) / (exp(s cos_t) + exp(s cos_n)) = sigmoid(s (cos_t - cos_n))
  "Is this photo better described by the term than by nothing in particular?": in [0, 1], one
  per term, independent of the other terms (a clearly present "graffiti" is not diluted by 200
  other terms), so the scores do not sum to 1. The vocabulary softmax stays in raw.softmax.
- "softmax" (CLIP as defined): softmax over the whole vocabulary of logit_scale * cos. The
  scores sum to 1 per image: they rank terms against each other, they are not independent.
- "sigmoid" (SigLIP as trained): sigmoid(logit_scale * cos + logit_bias), one per term.
- "auto": sigmoid when the model has a logit_bias (SigLIP), else softmax.

Weights: the pinned Hub snapshot's weights file (`weights_file`, default
open_clip_model.safetensors), loaded into open_clip's built-in architecture `model` with the
preprocessing and QuickGELU setting of the `pretrained` tag. Passing the file (not the tag) is
what honours the pinned revision and works offline. A local override is a folder in open_clip's
hub layout (open_clip_config.json + weights, loaded with `local-dir:`) or a single weights file.
SigLIP: its tokenizer is a Hugging Face tokenizer that open_clip would fetch by Hub name, unpinned;
from the Hub, the adapter loads it from the same pinned snapshot as the weights instead (the timm
SigLIP repos hold both), so it is pinned and works offline from the cache.

Text embeddings cost ~25 s for 200 terms on CPU (ViT-L-14), so they are cached on disk under
spec["cache_dir"], keyed by everything that determines them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners.base import (
    DecodeNeed,
    ImageResult,
    LoadResult,
    WeightsMissing,
    fingerprint,
    pick_torch_device,
    pick_torch_dtype,
    shortest_side_need,
    weights_dir,
)
from schemas.protocol import LoadSpec, Tag

DEFAULT_MODEL = "ViT-L-14-quickgelu"
DEFAULT_PRETRAINED = "openai"
DEFAULT_TEMPLATES = ("a photo of {}",)
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "*.model")
SCORE_MODES = ("auto", "softmax", "sigmoid", "binary")
DEFAULT_NEUTRAL = "something"  # binary mode: the neutral prompt is each template filled with this
CACHE_FORMAT = 1  # bump when the cached file or the embedding recipe changes
TEXT_BATCH = 64


@dataclass
class _Source:
    """Where the model comes from, in the terms open_clip.create_model_and_transforms takes."""

    name: str  # a built-in architecture, or "local-dir:<folder>"
    pretrained: str | None  # a weights file; None when open_clip finds it (local-dir)
    version: str  # model_version: hub id@revision, or path [fingerprint]
    force_quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)
    tokenizer_dir: Path | None = None  # a Hugging Face tokenizer from the pinned snapshot (SigLIP)


# --- options -------------------------------------------------------------------------------------


def _vocabulary(options: dict[str, Any]) -> list[str]:
    terms = options.get("vocabulary")
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise ValueError(
            "option 'vocabulary' must be a list of terms (model.toml: vocabulary = \"urbex\" "
            "or a file name, which mltag reads into a list)"
        )
    out = list(dict.fromkeys(t.strip() for t in terms if t.strip()))
    if not out:
        raise ValueError("the vocabulary is empty")
    return out


def _templates(options: dict[str, Any]) -> list[str]:
    raw = options.get("templates", list(DEFAULT_TEMPLATES))
    templates = [raw] if isinstance(raw, str) else list(raw)
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if not templates or bad:
        raise ValueError(f"each prompt template must contain '{{}}' exactly once, got {bad or templates!r}")
    return templates


def _precision(requested: str, device: str, options: dict[str, Any]) -> tuple[str, Any, Any, str]:
    """(open_clip precision, input dtype, autocast dtype or None, label).

    On CPU the weights stay float32 and bfloat16 is only autocast (about 2x faster, slightly
    different scores); on GPUs open_clip's own mixed precision is used.
    """
    import torch

    dtype = pick_torch_dtype(requested, device)
    if device == "cpu":
        if dtype == torch.float16:
            raise ValueError("float16 is not supported on CPU; use --dtype bfloat16 or float32")
        if options.get("cpu_bf16") or dtype == torch.bfloat16:
            return "fp32", torch.float32, torch.bfloat16, "float32 (bfloat16 autocast)"
        return "fp32", torch.float32, None, "float32"
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    return names[dtype], dtype, None, str(dtype).removeprefix("torch.")


# --- weights -------------------------------------------------------------------------------------


def _weights_in(folder: Path) -> Path:
    for name in WEIGHTS_FILES:
        if (folder / name).is_file():
            return folder / name
    # open_clip would warn and go on with random weights: refuse instead.
    raise WeightsMissing(f"no {' or '.join(WEIGHTS_FILES)} in {folder}")


def _builtin_source(options: dict[str, Any], weights: Path, version: str) -> _Source:
    import open_clip

    name = options.get("model", DEFAULT_MODEL)
    if open_clip.get_model_config(name) is None:
        raise ValueError(f"open_clip has no architecture {name!r} (see open_clip.list_models())")
    tag = options.get("pretrained", DEFAULT_PRETRAINED)
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        raise ValueError(
            f"open_clip knows no pretrained tag {tag!r} for {name} "
            f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'})"
        )
    # A weights *file* skips the tag's settings inside open_clip: apply them here.
    preprocess = {
        "image_mean": cfg.get("mean"),
        "image_std": cfg.get("std"),
        "image_interpolation": cfg.get("interpolation"),
        "image_resize_mode": cfg.get("resize_mode"),
    }
    quick_gelu = bool(options.get("quick_gelu", cfg.get("quick_gelu", False)))
    return _Source(name, str(weights), version, quick_gelu, preprocess)


def _resolve_source(spec: LoadSpec, options: dict[str, Any]) -> _Source:
    if spec.get("local_path"):
        path = weights_dir(spec)
        if path.is_dir() and (path / CONFIG_FILE).is_file():
            weights = _weights_in(path)
            return _Source(
                f"local-dir:{path}",
                None,
                f"{path} [{fingerprint(path / CONFIG_FILE, weights)}]",
                bool(options.get("quick_gelu", False)),
            )
        weights = path if path.is_file() else _weights_in(path)
        return _builtin_source(options, weights, f"{weights} [{fingerprint(weights)}]")
    weights_file = options.get("weights_file", WEIGHTS_FILES[0])
    folder = weights_dir(spec, allow_patterns=[weights_file, *TOKENIZER_FILES])
    if not (folder / weights_file).is_file():
        raise WeightsMissing(f"{weights_file} is not in {spec['hub_id']}@{spec['revision'][:12]} ({folder})")
    source = _builtin_source(options, folder / weights_file, f"{spec['hub_id']}@{spec['revision']}")
    if _hf_tokenizer(source.name) is not None:
        if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            raise WeightsMissing(f"{spec['hub_id']}@{spec['revision'][:12]} holds no tokenizer files ({folder})")
        source.tokenizer_dir = folder
    return source


def _hf_tokenizer(name: str) -> dict[str, Any] | None:
    """The text config of a built-in architecture whose tokenizer is a Hugging Face one (SigLIP), else None."""
    import open_clip

    text_cfg = (open_clip.get_model_config(name) or {}).get("text_cfg") or {}
    return text_cfg if text_cfg.get("hf_tokenizer_name") else None


def _tokenizer(source: _Source) -> Any:
    """open_clip's tokenizer for the architecture; a SigLIP one from the pinned snapshot's files."""
    import open_clip

    text_cfg = _hf_tokenizer(source.name) if source.tokenizer_dir is not None else None
    if text_cfg is None:
        return open_clip.get_tokenizer(source.name)
    from open_clip.tokenizer import HFTokenizer

    return HFTokenizer(
        str(source.tokenizer_dir),
        context_length=text_cfg.get("context_length", 64),
        **(text_cfg.get("tokenizer_kwargs") or {}),
    )


def _uses_quick_gelu(model: Any) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


# --- text embeddings -----------------------------------------------------------------------------


class _TextCache:
    """One safetensors file per key, written atomically; a bad file is recomputed, not trusted."""

    def __init__(self, cache_dir: str | None, parts: dict[str, Any]) -> None:
        blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:24]
        self.parts = blob
        self.path = Path(cache_dir) / "text-embeddings" / f"{self.key}.safetensors" if cache_dir else None

    def load(self, rows: int) -> Any:
        from safetensors.torch import load_file

        if self.path is None or not self.path.is_file():
            return None
        try:
            emb = load_file(str(self.path))["embeddings"]
        except Exception:  # noqa: BLE001 - a corrupt cache file only costs a recompute
            return None
        return emb if emb.ndim == 2 and emb.shape[0] == rows else None

    def save(self, emb: Any) -> str | None:
        """Write the file; returns an error text instead of failing the load."""
        from safetensors.torch import save_file

        if self.path is None:
            return "no cache_dir"
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"embeddings": emb.detach().cpu().contiguous()}, str(tmp), metadata={"key": self.parts})
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            return f"{type(exc).__name__}: {exc}"
        return None


def _encode_text(
    model: Any,
    tokenizer: Any,
    terms: list[str],
    templates: list[str],
    device: str,
    autocast: AbstractContextManager[Any],
) -> Any:
    """L2-normalised mean over templates of the normalised prompt embeddings, float32 [terms, dim]."""
    import torch

    per_template = []
    with torch.inference_mode(), autocast:
        for template in templates:
            rows = []
            for i in range(0, len(terms), TEXT_BATCH):
                tokens = tokenizer([template.format(t) for t in terms[i : i + TEXT_BATCH]]).to(device)
                rows.append(model.encode_text(tokens, normalize=True).float())
            per_template.append(torch.cat(rows))
    mean = torch.stack(per_template).mean(dim=0)
    return mean / mean.norm(dim=-1, keepdim=True)


# --- the adapter ---------------------------------------------------------------------------------


class Adapter:
    # torch tensors, set by load(); no neutral prompt (score modes other than binary): neutral_text None
    text: Any
    neutral_text: Any

    def load(self, spec: LoadSpec) -> LoadResult:
        import open_clip
        import torch

        options = spec.get("options") or {}
        self.terms = _vocabulary(options)
        self.templates = _templates(options)
        self.device = pick_torch_device(spec["device"])
        precision, self.input_dtype, self.autocast_dtype, dtype_label = _precision(spec["dtype"], self.device, options)
        source = _resolve_source(spec, options)
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            source.name,
            pretrained=source.pretrained,
            precision=precision,
            device=self.device,
            force_quick_gelu=source.force_quick_gelu,
            **source.preprocess,
        )
        self.model = model.eval()
        tokenizer = _tokenizer(source)
        self.logit_scale = float(model.logit_scale.exp().item())
        has_bias = getattr(model, "logit_bias", None) is not None
        self.logit_bias = float(model.logit_bias.item()) if has_bias else 0.0
        self.score_mode = self._score_mode(options.get("score", "auto"), has_bias)
        self.neutral = str(options.get("neutral") or DEFAULT_NEUTRAL) if self.score_mode == "binary" else None
        if self.neutral is not None and self.neutral in self.terms:
            raise ValueError(
                f"the neutral term {self.neutral!r} is also a vocabulary term: choose another (option 'neutral')"
            )
        # binary: the neutral prompt is encoded with the terms, as one more row (the last)
        texts = self.terms + ([self.neutral] if self.neutral is not None else [])

        text, cache_note = self._text_features(
            model,
            tokenizer,
            spec.get("cache_dir"),
            texts,
            {
                "format": CACHE_FORMAT,
                "model": source.name,
                "version": source.version,
                "quick_gelu": source.force_quick_gelu,
                "precision": dtype_label,
                "templates": self.templates,
                "vocabulary": texts,
            },
        )
        text = text.to(self.device, dtype=torch.float32)
        self.text, self.neutral_text = (text[:-1], text[-1]) if self.neutral is not None else (text, None)

        notes = [
            self._score_note(has_bias),
            cache_note,
            f"prompts: {len(self.templates)} template(s) averaged: " + "; ".join(self.templates),
            f"model: {source.name}, activation {'QuickGELU' if _uses_quick_gelu(model) else 'GELU'}, "
            f"logit_scale {self.logit_scale:.2f}" + (f", logit_bias {self.logit_bias:.2f}" if has_bias else ""),
        ]
        if options.get("vocabulary_name"):
            notes.append(f"vocabulary: {options['vocabulary_name']} ({len(self.terms)} terms)")
        return {"device": self.device, "dtype": dtype_label, "model_version": source.version, "notes": notes}

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """From open_clip's eval transform: Resize(n) scales the shortest side to n, Resize((h, w))
        squashes to h x w; any other first step (ResizeKeepRatio, ...) gets the full image."""
        first = self.preprocess.transforms[0]
        if type(first).__name__ != "Resize":
            return None
        size = first.size
        if isinstance(size, int) or (isinstance(size, list | tuple) and len(size) == 1):
            return shortest_side_need(width, height, size if isinstance(size, int) else size[0])
        return int(size[1]), int(size[0])

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        import torch

        batch = torch.stack([self.preprocess(img.rgb()) for img in images])
        batch = batch.to(self.device, dtype=self.input_dtype)
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_image(batch, normalize=True).float()
        logits = self.logit_scale * features @ self.text.T
        neutral: list[float | None] = [None] * len(images)
        softmax: list[list[float] | None] = [None] * len(images)
        if self.score_mode == "sigmoid":
            logits = logits + self.logit_bias
            scores = torch.sigmoid(logits)
        elif self.score_mode == "binary":
            neutral_logits = self.logit_scale * features @ self.neutral_text
            scores = torch.sigmoid(logits - neutral_logits[:, None])  # the two-way softmax, per term
            neutral = neutral_logits.cpu().tolist()
            softmax = torch.softmax(logits, dim=-1).cpu().tolist()
        else:
            scores = torch.softmax(logits, dim=-1)
        return [
            self._result(row_logits, row_scores, row_neutral, row_softmax)
            for row_logits, row_scores, row_neutral, row_softmax in zip(
                logits.cpu().tolist(), scores.cpu().tolist(), neutral, softmax, strict=True
            )
        ]

    # -- helpers ---------------------------------------------------------------------------------
    def _text_features(
        self, model: Any, tokenizer: Any, cache_dir: str | None, texts: list[str], key_parts: dict[str, Any]
    ) -> tuple[Any, str]:
        """The text embeddings of `texts` from the disk cache, else computed and cached; and a note."""
        cache = _TextCache(cache_dir, key_parts)
        text = cache.load(len(texts))
        if text is not None:
            return text, f"text embeddings: cache hit ({cache.key})"
        t0 = time.perf_counter()
        text = _encode_text(model, tokenizer, texts, self.templates, self.device, self._autocast())
        took = time.perf_counter() - t0
        error = cache.save(text)
        where = f"not cached ({error})" if error else f"cached ({cache.key})"
        prompts = len(texts) * len(self.templates)
        return text, f"text embeddings: computed for {prompts} prompts in {took:.1f} s, {where}"

    def _autocast(self) -> AbstractContextManager[Any]:
        import torch

        if self.autocast_dtype is None:
            return nullcontext()
        autocast: AbstractContextManager[Any] = torch.autocast(device_type=self.device, dtype=self.autocast_dtype)
        return autocast

    @staticmethod
    def _score_mode(requested: str, has_bias: bool) -> str:
        if requested not in SCORE_MODES:
            raise ValueError(f"option 'score' must be one of {', '.join(SCORE_MODES)}, got {requested!r}")
        if requested == "auto":
            return "sigmoid" if has_bias else "softmax"
        return requested

    def _score_note(self, has_bias: bool) -> str:
        n = len(self.terms)
        if self.score_mode == "softmax":
            return f"scores: softmax over {n} terms (sum to 1 per image; not independent probabilities)"
        if self.score_mode == "binary":
            neutral = "; ".join(t.format(self.neutral) for t in self.templates)
            return (
                f"scores: per term, a two-way softmax of the term's prompt against the neutral prompt "
                f"'{neutral}' at logit_scale, = sigmoid(logit_scale*(cos_term - cos_neutral)), {n} terms "
                "(independent, in [0, 1], do not sum to 1); raw.softmax keeps the softmax over all terms"
            )
        note = f"scores: sigmoid(logit_scale*cos + logit_bias) per term, {n} terms (independent; do not sum to 1)"
        if not has_bias:
            note += "; this model has no logit_bias (not trained with a sigmoid loss): bias 0, scores uncalibrated"
        return note

    def _result(
        self, logits: list[float], scores: list[float], neutral: float | None = None, softmax: list[float] | None = None
    ) -> ImageResult:
        order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        tags: list[Tag] = [{"name": self.terms[i], "score": scores[i], "category": "zero-shot"} for i in order]
        raw: dict[str, Any] = {
            "logits": dict(zip(self.terms, logits, strict=True)),
            "score_mode": self.score_mode,
            "templates": list(self.templates),
            "logit_scale": self.logit_scale,
        }
        if self.score_mode == "sigmoid":
            raw["logit_bias"] = self.logit_bias
        if softmax is not None:  # binary: the neutral prompt's logit and CLIP's vocabulary softmax
            raw["neutral"] = {"term": self.neutral, "logit": neutral}
            raw["softmax"] = dict(zip(self.terms, softmax, strict=True))
        return {"status": "ok", "tags": tags, "caption": None, "raw": raw}
