mltag analyze ~/photos --models wd14,wd14-eva02   # writes to the results store in your user data folder
mltag analyze ~/photos --models wd14,wd14-eva02   # again: only what is missing or failed runs
mltag run wd14 ~/photos --timeout 300             # recompute one model; the others' cells stay
mltag report ~/photos --format json > results.json   # render the store; no model runs
mltag report ~/photos --models wd14 --format csv     # some models (table, json, jsonl, csv, html)
mltag analyze ~/photos --models wd14 --rehash     # read and hash every file again
mltag store stats                                 # size per model, cells, images
mltag store vacuum                                # compact the file
