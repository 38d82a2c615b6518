make setup                          # the orchestrator venv (.venv) with the `mltag` command
make setup-envs                     # every model env (uv; ~2 s per env once uv's cache is warm)
make setup-envs MODELS=wd14,clip    # only what these models need
source .venv/bin/activate           # puts `mltag` on PATH (or call .venv/bin/mltag)
mltag setup-envs --models clip      # the same from mltag itself
mltag health                        # per model: env current, runner answers, weights cached
mltag health wd14 --deep            # --deep runs one inference
