mltag analyze ~/photos --raw develop                # camera RAW: always LibRaw's develop
mltag analyze ~/photos --raw-pairs both             # RAW+JPEG pairs: analyse both files
mltag analyze photos.zip                 # every photo inside, read in place: never extracted
mltag analyze shoot.tar.gz more.tar      # .tar, .tar.gz / .tgz (also .tar.bz2, .tar.xz)
mltag analyze train-00000-of-00004.parquet   # a Hugging Face image dataset's parquet files
mltag analyze my_dataset/                # a folder written by `datasets`' save_to_disk
mltag analyze hf://datasets/ORG/NAME@main --offline   # a dataset on the Hub (its parquet files)
mltag report photos.zip                  # the stored results of the photos in it
