"""mltag's orchestrator: the CLI, the registry, env building, runner supervision, reports.

Never imports runners.* or any model library: adapters are named by dotted strings in
envs/<model>/model.toml and run in their own venvs.
"""

__version__ = "0.1.0"  # the one place (pyproject.toml reads it); `mltag --version` prints it
