mltag analyze ~/photos/rocket.jpg --models wd14,wd14-eva02 --show-matrix --show-timing --show-confidence ruins
mltag report ~/photos --show-matrix --show-timing --show-confidence "no humans" --top 10
# a synonym map: `derelict = abandoned`, or several names for one
cat > my-synonyms.txt <<'SYN'
# comments start with #
derelict, decrepit = abandoned
ruins = ruin
SYN
mltag analyze ~/photos --models wd14 --threshold 0.3 --synonyms my-synonyms.txt --format json > results.json
mltag report ~/photos --compare-top 5 --consensus-min 2
