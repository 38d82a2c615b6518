"""Model runners: code that runs ONLY inside a model's own venv.

`python -m runners.host <adapter module>` is the one process loop for every model
(runners/host.py). Each model family is one adapter module (runners/<family>.py) holding a
class named `Adapter` with two methods:

    load(spec: LoadSpec) -> LoadResult          # read weights, pick the device
    infer(images: list[DecodedImage], options: dict) -> list[ImageResult]

How to add a model:
  1. `envs/<model>/model.toml` naming the adapter module, hub id + pinned revision and env.
  2. `runners/<family>.py` if the family is new (import only what its env pins).
  3. `tests/tiny/<family>.py` (a tiny random model of the real architecture) and
     `tests/adapters/test_<family>.py`.

Never import `orchestrator`, typer, rich or another adapter from here.
"""
