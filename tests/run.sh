#!/bin/sh
# run.sh - run test programs one after another in DIR, printing each
# one's output under "=== NAME" and its time after it; the last line is "RESULT PASS FAIL
# [FAILED...]" for make test to add up.  DIR must sit beside the source
# tree's root (tests read ../tests/vectors), and two runs at once need
# two directories (tests make scratch files with fixed names).
#   tests/run.sh DIR PROGRAM...   (programs relative to the tree's root)
set -u
dir=$1
shift
mkdir -p "$dir"
pass=0
fail=0
failed=
for t in "$@"; do
  echo "=== $t"
  t0=$(date +%s)
  if (cd "$dir" && ASAN_OPTIONS=detect_leaks=1 "../$t"); then
    pass=$((pass + 1))
    echo "=== $t passed in $(($(date +%s) - t0)) s"
  else
    fail=$((fail + 1))
    failed="$failed $t"
    echo "=== $t FAILED in $(($(date +%s) - t0)) s"
  fi
done
echo "RESULT $pass $fail$failed"
