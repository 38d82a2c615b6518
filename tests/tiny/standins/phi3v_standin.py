"""INTERFACE STAND-IN for microsoft/Phi-3.5-vision-instruct's remote code -- NOT the upstream code.

The real files (configuration_phi3_v.py, modeling_phi3_v.py, image_embedding_phi3_v.py,
processing_phi3_v.py, image_processing_phi3_v.py) could not be found offline
(../shared/upstream/phi-3_5-vision/SOURCE.md). This file offers the documented surface a user's code
touches (model card), so that mltag's adapter runs its real load and generate calls:

    AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True, torch_dtype="auto",
                                         _attn_implementation="eager" | "flash_attention_2")
    processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True, num_crops=16)
    prompt = processor.tokenizer.apply_chat_template([{"role": "user", "content": "<|image_1|>\\n..."}],
                                                     tokenize=False, add_generation_prompt=True)
    inputs = processor(prompt, [image], return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=..., do_sample=False, eos_token_id=processor.tokenizer.eos_token_id)
    processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True, ...)

built from similar parts (transformers' Phi3 decoder, a CLIP vision tower, a projection; the image
stands in the prompt as placeholder tokens replaced by its features). Its internals (HD crops, the
real image-token count, num_crops' effect) are NOT Phi-3.5-vision's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    BatchFeature,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    GenerationMixin,
    Phi3Config,
)
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.phi3.modeling_phi3 import Phi3Model, Phi3PreTrainedModel

IMAGE_TOKEN = "<|image|>"


class Phi3VConfig(Phi3Config):
    model_type = "phi3_v"

    def __init__(
        self, vision_config: dict[str, Any] | None = None, image_tokens: int = 4, image_token_id: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.vision_config = vision_config or {}
        self.image_tokens = image_tokens
        self.image_token_id = image_token_id


class Phi3VForCausalLM(Phi3PreTrainedModel, GenerationMixin):
    config_class = Phi3VConfig

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__(config)
        self.model = Phi3Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.vision = CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
        self.img_projection = nn.Linear(self.vision.config.hidden_size, config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache_position: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            mask = input_ids == self.config.image_token_id
            inputs_embeds = self.model.embed_tokens(input_ids.masked_fill(mask, 0))
            if pixel_values is not None and mask.any():  # the first step: put the image's features in place
                features = self.vision(pixel_values=pixel_values.to(inputs_embeds.dtype)).last_hidden_state
                pooled = nn.functional.adaptive_avg_pool1d(features.transpose(1, 2), self.config.image_tokens)
                image = self.img_projection(pooled.transpose(1, 2))
                inputs_embeds = inputs_embeds.clone()
                inputs_embeds[mask] = image.reshape(-1, image.shape[-1])[: int(mask.sum())]
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_key_values=past_key_values,
            position_ids=position_ids,
            cache_position=cache_position,
            use_cache=use_cache,
        )
        return CausalLMOutputWithPast(logits=self.lm_head(out.last_hidden_state), past_key_values=out.past_key_values)


class Phi3VProcessor:
    """Tokenizer + image processor; `num_crops` is accepted and recorded (upstream: HD crops per image)."""

    def __init__(self, tokenizer: Any, image_processor: Any, image_tokens: int, num_crops: int = 4) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_tokens = image_tokens
        self.num_crops = num_crops

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoProcessor") -> None:
        """What transformers calls on a remote processor class loaded from a local folder (ProcessorMixin has it)."""

    @classmethod
    def from_pretrained(cls, path: str, num_crops: int = 4, **kwargs: Any) -> Phi3VProcessor:
        kwargs.pop("trust_remote_code", None)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        image_processor = CLIPImageProcessor.from_pretrained(path, **kwargs)
        return cls(tokenizer, image_processor, int(getattr(image_processor, "image_tokens", 4)), num_crops)

    def __call__(self, text: str, images: list[Any] | None = None, return_tensors: str = "pt") -> BatchFeature:
        images = images or []
        for i in range(len(images)):
            text = text.replace(f"<|image_{i + 1}|>", IMAGE_TOKEN * self.image_tokens)
        enc = self.tokenizer(text, return_tensors=return_tensors, return_token_type_ids=False)
        data = dict(enc)
        if images:
            data["pixel_values"] = self.image_processor(images=images, return_tensors=return_tensors)["pixel_values"]
            data["image_sizes"] = torch.tensor([[img.height, img.width] for img in images])
        return BatchFeature(data)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)
