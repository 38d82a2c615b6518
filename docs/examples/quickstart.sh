# every model named, on a folder (recursive): terminal boxes per image and model
mltag analyze ~/photos --models wd14,wd14-eva02
# JSON (validates against schemas/result.schema.json) or CSV on stdout, nothing else on stdout
mltag analyze ~/photos --models wd14 --format json > results.json
mltag analyze ~/photos --models wd14 --format csv --out results.csv --threshold 0.3
mltag analyze ~/photos --models wd14 --format jsonl --out results.jsonl   # one image per line
# one model alone, its runner's stderr shown live (re-run a model that failed)
mltag run wd14 ~/photos/rocket.jpg --timeout 300
# the registry: kind, env, hub id @ pinned revision, env built?, weights cached?
mltag models
# the results store: size per model, cells, images
mltag store stats
