mltag analyze ~/photos --models florence2,qwen25vl,wd14 --judge qwen25-judge
mltag judge ~/photos --judge qwen25-judge          # over what the results store already holds
mltag analyze ~/photos --models florence2,wd14 --judge qwen25vl   # a judge that sees the photo
