"""The wire contract between the orchestrator and the model runners.

This package runs on BOTH sides (the orchestrator's venv and every model venv), so it may
import only the standard library and msgpack.
"""
