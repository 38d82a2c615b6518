mltag analyze photos --models wd14,clip,florence2 --offline \
    --weights wd14=/models/wd-vit-tagger-v3 \
    --weights clip=/models/clip-vit-l-14 \
    --weights florence2=/models/Florence-2-large
mltag analyze photos --models blip --offline --weights blip=~/.cache/huggingface/hub   # a cache root
