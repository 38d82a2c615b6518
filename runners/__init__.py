"""Model runners: code that runs ONLY inside a model's own venv.

`python -m runners.host <adapter module>` is the one process loop for every model (runners/host.py).
This folder holds the infrastructure every model shares, as pre-commit's lang_base does:

    host.py          the process loop: framed stdio requests, timings, memory, errors as replies
    base.py          the adapter contract (LoadResult, ImageResult, DecodeNeed) and weight lookup
    _images.py       decoding at the size the model needs (JPEG draft, HEIC/AVIF/JXL/RAW)
    _decode_ahead.py the next batch decoded while one computes
    _text.py         checks on generated text and the tag-list parser
    _vlm.py          the captioning VLMs' shared base (prompts, generate, batching)
    _merge.py        the judge's merge of several models' outputs
    _remote.py       remote-code (trust_remote_code) sources, pinned
    _tv_cpu_shim.py  the torchvision stand-in for CPU envs

Each model family is one module under runners/adapters/ (see that package's docstring). How to add a
model: CONTRIBUTING.md.

Never import `orchestrator`, typer, rich or another adapter from here.
"""
