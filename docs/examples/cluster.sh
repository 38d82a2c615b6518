make setup EXTRAS=ray                   # Ray 2.58.0 in .venv; no torch, no CUDA
ray start --head                        # on one node; `ray start --address=HEAD:6379` on the others
mltag health wd14 clip --cluster auto   # each node: CPUs, GPUs, memory, devices, each env there
mltag analyze ~/photos --models wd14,clip --cluster auto      # or MLTAG_CLUSTER=auto
mltag analyze ~/photos --cluster 10.0.0.5:6379 --cluster-parallel 2
mltag analyze ~/photos --cluster local  # a private Ray on this machine, for this run only
