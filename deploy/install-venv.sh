#!/bin/sh
# Builds the bridge's runtime virtualenv. The image (deploy/Dockerfile) runs exactly this, and so
# does tests/deploy/test_image.py, which has no Docker engine to build the image with.
#
#   deploy/install-venv.sh deps   SRC VENV   runtime dependencies from the hash-pinned lock
#   deploy/install-venv.sh bridge SRC VENV   build the bridge's wheel from SRC and install it
#
# SRC holds pyproject.toml, README.md, bridge/ and requirements/. Nothing is written into SRC
# (the wheel is built from a copy), no dev dependency is installed, and pip and setuptools are
# removed from VENV at the end, so the image carries only what the bridge runs on.
set -eu

step=$1
src=$(cd "$2" && pwd)
venv=$3
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

case "$step" in
deps)
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --require-hashes --no-deps \
        -r "$src/requirements/runtime.lock"
    ;;
bridge)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/src" "$work/wheels"
    cp "$src/pyproject.toml" "$src/README.md" "$work/src/"
    cp -R "$src/bridge" "$work/src/bridge"
    # The build backend, pinned with hashes, in a throw-away environment of its own.
    "$python" -m venv "$work/build"
    "$work/build/bin/python" -m pip install --quiet --require-hashes --no-deps \
        -r "$src/requirements/build.lock"
    "$work/build/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation \
        --wheel-dir "$work/wheels" "$work/src"
    "$venv/bin/python" -m pip install --quiet --no-deps "$work"/wheels/*.whl
    "$venv/bin/python" -m pip uninstall --quiet --yes pip setuptools
    ;;
*)
    echo "usage: $0 deps|bridge SRC VENV" >&2
    exit 2
    ;;
esac
