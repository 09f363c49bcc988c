#!/bin/sh
# clang-14 as Bazel's C/C++ compiler for --config=fuzz, minus the GCC-only
# options some BUILD files set (clang rejects -fvect-cost-model=...).
# fuzz/run_fuzzers.sh installs it as /usr/local/bin/flowtape-fuzz-cc.
for a do
  shift
  case $a in
    -fvect-cost-model=*) ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec clang-14 "$@"
