#!/usr/bin/env bash
# Print a usable Python >= 3.11, preferring 3.12 (every test and bench dependency has wheels for it) on this machine (pyenv installs included).
# Used by the Makefile to create the project's virtual environment.
set -u
candidates=(python3.12)
for dir in "$HOME"/.pyenv/versions/3.12*/bin /usr/local/bin /usr/bin; do
  for exe in python3.12; do
    [ -x "$dir/$exe" ] && candidates+=("$dir/$exe")
  done
done
candidates+=(python3.11 python3)
for py in "${candidates[@]}"; do
  if "$py" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
    command -v "$py" 2>/dev/null || echo "$py"
    exit 0
  fi
done
echo "no Python >= 3.11 found" >&2
exit 1
