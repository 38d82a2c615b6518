"""One module per model family: a class named `Adapter` with `load(spec)` and `infer(images, options)`.

Each is named by an `adapter = "runners.adapters.<family>"` line in `envs/<model>/model.toml` and runs
inside that model's env (`python -m runners.host runners.adapters.<family>`). An adapter imports the
runner infrastructure one folder up (base, _images, _text, _vlm, ...) and its own model libraries, never
another adapter (tests/unit/test_imports.py).
"""
