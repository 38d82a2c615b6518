"""One module per `mltag` command; orchestrator/cli/__init__.py registers them."""
