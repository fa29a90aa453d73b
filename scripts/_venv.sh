# Sourced by run-node.sh and run-tests.sh: pick a Python 3.10-3.12, create .venv, install what is missing.
# DEV=1 also installs the test tools. Re-installs only when a requirements file changed.
VENV="${VENV:-.venv}"
pick_python() {
  for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.10, 3.11 or 3.12 is needed (set PYTHON=/path/to/python)" >&2
  return 1
}
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  echo "creating $VENV with $("$PY" --version)" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed${DEV:+-dev}"
reqs="requirements.txt requirements-models.txt pyproject.toml${DEV:+ requirements-dev.txt}"
if [ ! -f "$stamp" ] || [ -n "$(find $reqs -newer "$stamp" 2>/dev/null)" ]; then
  echo "installing requirements into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install --quiet -e . -r "requirements${DEV:+-dev}.txt" \
    -r <(grep -v -i -E '^[[:space:]]*rapidocr' requirements-models.txt)
  # packages that ship model files: without their dependencies (DECISIONS 15)
  mapfile -t nodeps < <(grep -i -E '^[[:space:]]*rapidocr' requirements-models.txt | sed 's/[[:space:]]*#.*//')
  [ ${#nodeps[@]} -eq 0 ] || "$VENV/bin/python" -m pip install --quiet --no-deps "${nodeps[@]}"
  touch "$stamp"
fi
