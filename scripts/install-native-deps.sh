#!/usr/bin/env bash
# Make the C headers that the native batch kernel (asyncarr/kernel/csrc) builds against
# present: libzstd, libblosc (1.x), liblz4 and zlib, plus the running Python's own
# headers. Installs the Debian/Ubuntu -dev packages with apt-get where they are missing
# and this user may (root, or passwordless sudo). Never fails: without them the package
# build leaves the kernel out and asyncarr uses its pure-Python path (say so loudly).
# Usage: scripts/install-native-deps.sh [python]
set -u
py="${1:-python3}"
cc="${CC:-cc}"

have_header() { printf '#include <%s>\n' "$1" | "$cc" -E -x c - >/dev/null 2>&1; }

missing=()
command -v "$cc" >/dev/null 2>&1 || missing+=(gcc)
if [ ${#missing[@]} -eq 0 ]; then
  have_header zstd.h || missing+=(libzstd-dev)
  have_header blosc.h || missing+=(libblosc-dev)
  have_header lz4.h || missing+=(liblz4-dev)
  have_header zlib.h || missing+=(zlib1g-dev)
else
  missing+=(libzstd-dev libblosc-dev liblz4-dev zlib1g-dev)
fi
if ! "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  missing+=("$("$py" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}-dev")' 2>/dev/null || echo python3-dev)")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
allowed=1
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    allowed=0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$allowed" -eq 0 ]; then
  echo "install-native-deps: missing ${missing[*]} and no apt-get as root here;" \
       "the native kernel will not be built (asyncarr uses its pure-Python path)" >&2
  exit 0
fi
echo "install-native-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -q >/dev/null 2>&1
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    echo "install-native-deps: apt-get could not install ${missing[*]};" \
         "the native kernel will not be built" >&2
fi
exit 0
