#!/bin/bash
# hopper, N = 16, H = 100: one iteration, then a resume to 3 iterations; wall time of the resume.
# run from any scratch directory; ARMS name the runs (e.g. old fixed), code switched between them by hand
for arm in "$@"; do
  rm -rf hop_$arm
  spo-train --env hopper --num-envs 16 --episode-length 100 --max-iterations 1 --checkpoint-every 1 --eval-every 1 --run-dir hop_$arm --quiet > /dev/null 2>&1
  s=$(date +%s.%N)
  spo-train --env hopper --num-envs 16 --episode-length 100 --max-iterations 3 --checkpoint-every 1 --eval-every 1 --run-dir hop_$arm --resume --quiet > /dev/null 2>&1
  e=$(date +%s.%N)
  echo "$arm resume wall $(python -c "print(round($e-$s,1))") s"
done
