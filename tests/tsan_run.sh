#!/bin/sh
# tsan_run.sh - run the ThreadSanitizer builds (make tsan, make test).
# Run from build/.  clang-14's TSan cannot start on kernels that randomise
# mmap with more bits than it expects ("unexpected memory mapping"); then
# the program is run again with address randomisation off (setarch -R),
# which changes nothing the test checks.  Any other failure is a failure.
fail=0
for t in tsan/test_mvcc tsan/test_threads tsan/test_group; do
  echo "=== $t"
  out=$(TSAN_OPTIONS="halt_on_error=1 exitcode=66" "./$t" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q "unexpected memory mapping"; then
    echo "$t: TSan cannot map its shadow memory here; again with setarch -R"
    out=$(TSAN_OPTIONS="halt_on_error=1 exitcode=66" setarch "$(uname -m)" -R "./$t" 2>&1)
    rc=$?
  fi
  printf '%s\n' "$out"
  [ $rc -eq 0 ] || { echo "$t: failed ($rc)"; fail=1; }
done
exit $fail
