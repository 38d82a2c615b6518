mltag analyze ~/photos --models wd14,wd14-eva02 --format json > results.json
# labels.csv: one row per image (a path relative to the CSV's folder, or absolute, or a sha256), then its true tags
cat > labels.csv <<'CSV'
image,tags
photos/rocket.jpg,"ruins, outdoors, no humans"
photos/chelsea.png,cat,indoors
CSV
mltag eval --labels labels.csv ~/photos                 # from the results store, labels from a CSV
mltag eval --labels labels.csv --results results.json   # from a saved --format json document
mltag eval --labels labels.csv ~/photos --format csv        # or json; --synonyms FILE as in the comparison
mltag labels import labels.csv        # the labels into the store: each listed photo is marked done
mltag labels export --out labels-done.csv   # the photos marked done, with their yes tags, keyed by sha256
mltag eval ~/photos                   # no --labels: the store's labels (the same numbers)
