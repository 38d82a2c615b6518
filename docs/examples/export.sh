# one model above a threshold, sidecars in a separate folder that mirrors the archive: the archive is not touched
mltag export ~/photos --model wd14 --threshold 0.5 --out ~/photos-xmp
# the tags most models agree on (normalised names), listed, nothing written
mltag export ~/photos --model consensus --consensus-min 2 --out ~/photos-xmp --dry-run
# the top model of the ranking at its best threshold (labels from the store, or --labels CSV)
mltag export ~/photos --model best --labels labels.csv --out ~/photos-xmp
# sidecars next to the photos (photo.jpg.xmp)
mltag export ~/photos --model wd14 --threshold 0.5 --beside
# inside the JPEG / TIFF / DNG files themselves (the one command that changes photos)
mltag export ~/photos --model wd14 --threshold 0.5 --embed --normalise
