mltag analyze ~/photos --models qwen25vl,internvl3,blip2 --ask both        # caption and a tag list
mltag analyze ~/photos --models qwen25vl --prompt "Describe the decay in this photo." --ask caption
mltag run blip ~/photos --option blip.prompt="a photography of" --option num_beams=3
mltag analyze ~/photos --models qwen25vl,internvl3 --quantize 4 --device cuda  # bitsandbytes, CUDA only
