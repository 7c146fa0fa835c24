#!/usr/bin/env bash
# Run the native kernel's tests (the fuzz suite by default) against a build of the kernel
# with AddressSanitizer and UndefinedBehaviorSanitizer. Not part of `make test` (slow).
#   bench/kernel_asan.sh [pytest args...]     e.g. ASYNCARR_FUZZ_EXAMPLES=2000 bench/kernel_asan.sh
#   bench/kernel_asan.sh --python script.py [args...]   (e.g. bench/kernel_atheris.py)
# The regular build is put back afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PY:-.venv/bin/python}"
suffix="$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
include="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
target="asyncarr/kernel/_ckernel$suffix"
backup="$(mktemp)"
[ -f "$target" ] && cp "$target" "$backup"
restore() { if [ -s "$backup" ]; then cp "$backup" "$target"; else rm -f "$target"; fi; rm -f "$backup"; }
trap restore EXIT
"${CC:-cc}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -std=gnu11 -shared -fPIC -I"$include" asyncarr/kernel/csrc/*.c \
  -lzstd -lblosc -llz4 -lz -pthread -o "$target"
asan="$("${CC:-cc}" -print-file-name=libasan.so)"
ubsan="$("${CC:-cc}" -print-file-name=libubsan.so)"
[ $# -gt 0 ] || set -- tests/kernel
if [ "$1" = "--python" ]; then
  shift
  run=("$py")
else
  run=("$py" -m pytest -q -p no:cacheprovider)
fi
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" \
  "${run[@]}" "$@"
