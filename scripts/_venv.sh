# Sourced by run-node.sh and run-tests.sh: pick a Python 3.10-3.13, create .venv, install what is missing.
# DEV=1 also installs the test tools. Re-installs only when a requirements file's content changed.
VENV="${VENV:-.venv}"
pick_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.10, 3.11, 3.12 or 3.13 is needed (set PYTHON=/path/to/python)" >&2
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  echo "creating $VENV with $("$PY" --version)" >&2
  "$PY" -m venv "$VENV"
fi
# One stamp, $VENV/.installed: the sha256 of every file the last install used (sha256sum's format). The run level
# needs requirements.txt, requirements-models.txt and pyproject.toml; the dev level (DEV=1) also requirements-dev.txt,
# which includes the run level (dev ⊇ run): after a DEV=1 setup, run-node.sh installs nothing. Once dev, a venv stays
# dev (a changed requirements file reinstalls both levels), so the test tools never go missing.
stamp="$VENV/.installed"
run_files=(requirements.txt requirements-models.txt pyproject.toml)
stamp_has() { [ -f "$stamp" ] && grep -qxF "$(sha256sum "$1")" "$stamp"; }
stamp_is_dev() { [ -f "$stamp" ] && grep -q ' requirements-dev.txt$' "$stamp"; }
# the stamps of earlier versions (empty files .installed and .installed-dev, compared by date) count once
for legacy in "$VENV/.installed-dev" "$VENV/.installed"; do
  if [ -f "$legacy" ] && ! [ -s "$legacy" ] && [ -z "$(find "${run_files[@]}" requirements-dev.txt -newer "$legacy" 2>/dev/null)" ]; then
    if [ "$legacy" = "$VENV/.installed-dev" ]; then sha256sum "${run_files[@]}" requirements-dev.txt >"$stamp.new"
    else sha256sum "${run_files[@]}" >"$stamp.new"; fi
    rm -f "$VENV/.installed-dev" "$VENV/.installed"; mv "$stamp.new" "$stamp"; break
  fi
done
level=run
{ [ -n "${DEV:-}" ] || stamp_is_dev; } && level=dev
files=("${run_files[@]}")
[ "$level" = run ] || files+=(requirements-dev.txt)
missing=""
for file in "${files[@]}"; do stamp_has "$file" || missing="$missing $file"; done
if [ -n "$missing" ]; then
  echo "installing requirements ($level) into $VENV:$missing changed or not installed yet" >&2
  rm -f "$stamp"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install --quiet -e . -r "requirements$([ "$level" = run ] || echo -dev).txt" \
    -r <(grep -v -i -E '^[[:space:]]*rapidocr' requirements-models.txt)
  # packages that ship model files: without their dependencies (DECISIONS 15)
  mapfile -t nodeps < <(grep -i -E '^[[:space:]]*rapidocr' requirements-models.txt | sed 's/[[:space:]]*#.*//')
  [ ${#nodeps[@]} -eq 0 ] || "$VENV/bin/python" -m pip install --quiet --no-deps "${nodeps[@]}"
  sha256sum "${files[@]}" >"$stamp"
fi
