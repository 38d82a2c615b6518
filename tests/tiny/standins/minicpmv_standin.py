"""INTERFACE STAND-IN for openbmb/MiniCPM-V-4_5's remote code -- NOT the upstream code.

The real 4.5 files (configuration_minicpm.py, modeling_minicpmv.py, resampler.py, modeling_navit_siglip.py,
...) could not be found offline (../shared/upstream/minicpm-v-4_5/SOURCE.md). This file offers the
documented surface a user's code touches, so that mltag's adapter runs its real load and chat calls:

    AutoModel.from_pretrained(repo, trust_remote_code=True, attn_implementation="sdpa", torch_dtype=...)
    AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
    model.chat(msgs=[{"role": "user", "content": [pil_image, question]}], tokenizer=tokenizer,
               enable_thinking=False, sampling=False, max_new_tokens=N)  -> str   (stream=True: a generator)

built from the same kinds of parts (a Qwen3 language model, a SigLIP vision tower, a projection of
the vision features into the LM's embedding space, the image as placeholder "(<image>./</image>)" in
the chat template). Its internals (slicing, the 3D resampler, the exact prompt format, default
generation settings) are NOT MiniCPM-V's: results of the real model may differ in every detail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import Qwen3Config, Qwen3ForCausalLM, SiglipVisionConfig, SiglipVisionModel
from transformers.models.qwen3.modeling_qwen3 import Qwen3PreTrainedModel

IMAGE_PLACEHOLDER = "(<image>./</image>)"


class MiniCPMVConfig(Qwen3Config):
    model_type = "minicpmv"

    def __init__(
        self, vision_config: dict[str, Any] | None = None, query_num: int = 4, image_size: int = 32, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.vision_config = vision_config or {}
        self.query_num = query_num
        self.image_size = image_size


class MiniCPMV(Qwen3PreTrainedModel):
    config_class = MiniCPMVConfig

    def __init__(self, config: MiniCPMVConfig) -> None:
        super().__init__(config)
        self.llm = Qwen3ForCausalLM(config)
        self.vpm = SiglipVisionModel(SiglipVisionConfig(**config.vision_config))
        self.resampler = nn.Linear(self.vpm.config.hidden_size, config.hidden_size)
        self.post_init()

    def _image_embeds(self, image: Any) -> torch.Tensor:
        size = self.config.image_size
        pixels = torch.tensor(list(image.convert("RGB").resize((size, size)).getdata()), dtype=torch.float32)
        pixels = (pixels.view(size, size, 3).permute(2, 0, 1) / 255.0 - 0.5) / 0.5
        param = next(self.parameters())
        features = self.vpm(pixel_values=pixels[None].to(param.device, param.dtype)).last_hidden_state
        pooled = nn.functional.adaptive_avg_pool1d(features.transpose(1, 2), self.config.query_num).transpose(1, 2)
        return self.resampler(pooled)[0]

    @torch.inference_mode()
    def chat(
        self,
        image: Any = None,
        msgs: list[dict[str, Any]] | None = None,
        tokenizer: Any = None,
        processor: Any = None,
        max_new_tokens: int = 2048,
        min_new_tokens: int = 0,
        sampling: bool = True,
        stream: bool = False,
        enable_thinking: bool = False,
        **kwargs: Any,
    ) -> str | Iterator[str]:
        images, conversation = [], []
        for msg in msgs or []:
            content = msg["content"] if isinstance(msg["content"], list) else [msg["content"]]
            parts = []
            for item in content:
                if isinstance(item, str):
                    parts.append(item)
                else:
                    images.append(item)
                    parts.append(IMAGE_PLACEHOLDER)
            conversation.append({"role": msg["role"], "content": "\n".join(parts)})
        if image is not None and not images:
            images.append(image)
        text = tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
        )
        ids = tokenizer(text, return_tensors="pt").input_ids.to(self.device)
        embeds = [self._image_embeds(img) for img in images] + [self.llm.get_input_embeddings()(ids)[0]]
        inputs = torch.cat(embeds)[None]
        out = self.llm.generate(
            inputs_embeds=inputs,
            attention_mask=torch.ones(inputs.shape[:2], device=self.device, dtype=torch.long),
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=sampling,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        answer = tokenizer.decode(out[0], skip_special_tokens=True)
        if stream:
            return iter(answer.split(" "))
        return answer
