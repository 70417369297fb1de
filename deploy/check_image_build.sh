#!/usr/bin/env bash
# Performs deploy/Dockerfile's build steps without Docker, then starts the image's command and probes it the
# way the Helm chart does. For CI machines without a Docker engine: it proves that the package installs from
# its pinned dependencies into a fresh Python 3.11, that the installed package (not the source tree) loads its
# definitions from the copied files alone, and that the code server answers the chart's liveness probe.
#
#   deploy/check_image_build.sh            # PYTHON=python3.11 by default; needs PyPI (or PIP_INDEX_URL)
#
# Step for step with the Dockerfile:
#   FROM python:3.11-slim     -> a new venv of $PYTHON (3.11), in a temporary directory, clean environment
#   ENV ...                   -> the same variables (DAGSTER_HOME inside the temporary directory)
#   WORKDIR, COPY ...         -> the same three paths copied to <tmp>/app (not the checkout: only what is copied)
#   RUN pip install ...       -> the Dockerfile's own pip arguments (read from it), run in <tmp>/app
#   RUN python -c             -> the Dockerfile's own import check (read from it), in <tmp>/app; and no chDB
#                                (the `embedded` extra) installed: a chdb:// store fails naming the fix
#   CMD                       -> the Dockerfile's own command (read from it) on a free loopback port, then
#                                `dagster api grpc-health-check` (the chart's probe) and
#                                `dagster definitions validate`
# Not covered: the base image's OS packages and the non-root USER (a Docker build checks those).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERFILE="$ROOT/deploy/Dockerfile"
PYTHON=${PYTHON:-python3.11}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trace-summaries-image.XXXXXX")
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

# The Dockerfile's instructions, read from the file so this script cannot drift from it.
dockerfile_field() {
    "$PYTHON" - "$DOCKERFILE" "$1" <<'PY'
import json, shlex, sys
path, field = sys.argv[1], sys.argv[2]
lines, current = [], ""
for raw in open(path):
    line = raw.rstrip("\n")
    if line.lstrip().startswith("#"):
        continue
    current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
    if not line.endswith("\\"):
        lines.append(current.strip())
        current = ""
def first(prefix):
    found = [line[len(prefix):].strip() for line in lines if line.startswith(prefix)]
    if len(found) != 1:
        sys.exit(f"expected exactly one '{prefix}' instruction in {path}, found {len(found)}")
    return found[0]
if field == "from":
    print(first("FROM "))
elif field == "pip-args":  # RUN pip install <args> && ...
    words = shlex.split(first("RUN pip install").split("&&")[0])
    print("\n".join(words))
elif field == "import-check":  # RUN python -c "<code>"
    words = shlex.split(first("RUN python -c"))
    print(words[0])
elif field == "cmd":
    print("\n".join(json.loads(first("CMD "))))
else:
    sys.exit(f"unknown field {field}")
PY
}

step "FROM $(dockerfile_field from)"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "PYTHON=$PYTHON is not Python 3.11 (the image's interpreter)" >&2; exit 1; }
"$PYTHON" -m venv "$WORK/venv"
# A clean environment, as in a fresh image: only PATH/HOME/locale and pip's own settings (index, proxy).
CLEAN_ENV=(env -i "PATH=$WORK/venv/bin:/usr/local/bin:/usr/bin:/bin" "HOME=${HOME:-/root}" "LANG=C.UTF-8")
while IFS='=' read -r name _; do
    CLEAN_ENV+=("$name=${!name}")
done < <(env | grep -E '^(PIP_[A-Z_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)=' || true)
CLEAN_ENV+=(
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
    "DAGSTER_HOME=$WORK/dagster_home"
)
run() { "${CLEAN_ENV[@]}" "$@"; }

step "WORKDIR /opt/dagster/app + COPY pyproject.toml README.md trace_summaries/"
mkdir -p "$WORK/app" "$WORK/dagster_home"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$WORK/app/"
tar -C "$ROOT" --exclude='__pycache__' --exclude='*.pyc' -cf - trace_summaries | tar -C "$WORK/app" -xf -

mapfile -t PIP_ARGS < <(dockerfile_field pip-args)
step "RUN pip install ${PIP_ARGS[*]}"
(cd "$WORK/app" && run pip install --quiet "${PIP_ARGS[@]}")
run pip check

IMPORT_CHECK=$(dockerfile_field import-check)
step "RUN python -c \"$IMPORT_CHECK\""
(cd "$WORK/app" && run python -c "$IMPORT_CHECK")
# The image's copy is what loaded, not the checkout this script runs from.
(cd "$WORK/app" && run python -c "import trace_summaries; assert trace_summaries.__file__.startswith('$WORK/app/'), trace_summaries.__file__")

step "no embedded engine in the image: venv $(du -sm "$WORK/venv" | cut -f1) MB"
# Production reads a ClickHouse server; chDB (the `embedded` extra, ~535 MB) stays out of the image, and a
# chdb:// store left configured by mistake fails with an error naming the fix.
(cd "$WORK/app" && run python - "$WORK/no-engine" <<'PY'
import importlib.util
import sys

from trace_summaries.store import StoreError, TraceStore

assert importlib.util.find_spec("chdb") is None, "chdb is installed in the image"
try:
    TraceStore(f"chdb://{sys.argv[1]}").ensure_schema()
except StoreError as exc:
    assert "trace-summaries[embedded]" in str(exc) and "TRACE_SUMMARIES_CLICKHOUSE_DSN" in str(exc), exc
    print(f"a chdb:// store fails clearly: {exc}")
else:
    raise AssertionError("a chdb:// store opened without chDB")
PY
)

step "dagster definitions validate"
(cd "$WORK/app" && run dagster definitions validate -m trace_summaries.definitions)

mapfile -t CMD < <(dockerfile_field cmd)
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for i in "${!CMD[@]}"; do
    case "${CMD[$i]}" in
        0.0.0.0) CMD[i]=127.0.0.1 ;;
        3030) CMD[i]=$PORT ;;
    esac
done
step "CMD ${CMD[*]}"
(cd "$WORK/app" && exec "${CLEAN_ENV[@]}" "${CMD[@]}") >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    if run dagster api grpc-health-check -p "$PORT" >/dev/null 2>&1; then
        echo "code server healthy on port $PORT"
        step "image build steps passed"
        exit 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        break
    fi
    sleep 1
done
echo "the code server did not become healthy; its output:" >&2
cat "$WORK/server.log" >&2
exit 1
