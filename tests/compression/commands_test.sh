#!/usr/bin/env bash
# flowtape-compress / flowtape-decompress end to end: an IDX file round-trips
# byte for byte (whole and a sub-range); every help flag exits 0; missing flags,
# stray arguments, a truncated, a corrupted and a foreign container exit 1
# with a message naming the problem.
set -uo pipefail
root=$PWD
c="$root/compression/flowtape-compress"
d="$root/compression/flowtape-decompress"
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/commands.XXXXXX")
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
"$root/tests/compression/make_idf_files" "$tmp/m.ckpt" "$tmp/in.idx" || fail "make_idf_files"

"$c" --model="$tmp/m.ckpt" --images="$tmp/in.idx" --out="$tmp/x.idfc" >/dev/null || fail "compress"
"$d" --model="$tmp/m.ckpt" --in="$tmp/x.idfc" --out="$tmp/out.idx" >/dev/null || fail "decompress"
cmp -s "$tmp/in.idx" "$tmp/out.idx" || fail "decoded IDX differs from the input"

# A sub-range: images 2..5 equal the input's bytes of those images.
"$c" --model="$tmp/m.ckpt" --images="$tmp/in.idx" --first=2 --count=4 --out="$tmp/y.idfc" >/dev/null || fail "compress range"
"$d" --model="$tmp/m.ckpt" --in="$tmp/y.idfc" --out="$tmp/y.idx" >/dev/null || fail "decompress range"
cmp -s <(tail -c +17 "$tmp/y.idx") <(tail -c +$((17 + 2 * 48)) "$tmp/in.idx" | head -c $((4 * 48))) || fail "range bytes differ"

"$c" --help | grep -q "flowtape-compress:" || fail "--help"
# Every help flag prints the usage and exits 0 (Abseil's own handling of
# --helpfull and --helpmatch exits 1).
for h in --helpfull -helpfull --helpmatch=model --helpon=command \
         --helppackage=compression --helpshort -h; do
  for tool in "$c" "$d"; do
    out=$("$tool" "$h") || fail "$tool $h -> exit $?"
    [[ $out == *"--model=FILE"* ]] || fail "$tool $h: no usage in: $out"
  done
done
expect() {  # expect WANT COMMAND...
  local want=$1
  shift
  local err
  err=$("$@" 2>&1 >/dev/null)
  local rc=$?
  [[ $rc -eq 1 && $err == *"$want"* ]] || fail "$* -> exit $rc, stderr: $err (want: $want)"
}
expect "--images is required" "$c" --model="$tmp/m.ckpt" --out="$tmp/z.idfc"
expect "unexpected positional argument 'stray'" "$d" stray
head -c 60 "$tmp/x.idfc" >"$tmp/trunc.idfc"
expect "DATA_LOSS" "$d" --model="$tmp/m.ckpt" --in="$tmp/trunc.idfc" --out="$tmp/t.idx"
expect "truncated IDF container" "$d" --model="$tmp/m.ckpt" --in="$tmp/trunc.idfc" --out="$tmp/t.idx"
cp "$tmp/x.idfc" "$tmp/bad.idfc"
printf '\x55' | dd of="$tmp/bad.idfc" bs=1 seek=50 conv=notrunc status=none
expect "checksum mismatch" "$d" --model="$tmp/m.ckpt" --in="$tmp/bad.idfc" --out="$tmp/t.idx"
expect "not an IDF container" "$d" --model="$tmp/m.ckpt" --in="$tmp/in.idx" --out="$tmp/t.idx"
expect "image range" "$c" --model="$tmp/m.ckpt" --images="$tmp/in.idx" --first=8 --count=5 --out="$tmp/z.idfc"
[[ -e "$tmp/t.idx" ]] && fail "a failed decompress wrote its output"
[[ $fails -eq 0 ]] && echo PASS
exit $fails
