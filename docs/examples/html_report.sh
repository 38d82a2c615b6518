mltag analyze ~/photos --models wd14,wd14-eva02 --format html --out report.html
mltag report ~/photos --html report.html     # the same from the results store, no model run
