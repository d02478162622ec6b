#!/usr/bin/env bash
# `make autograder-debian`: the Gradescope autograder installed and run on a fresh Debian root
# filesystem, as Gradescope would: debootstrap of this machine's own Debian release (a stand-in
# for Gradescope's Ubuntu image: same apt, its own python3), setup.sh run in it as root with
# internet, then run_autograder on one submission without it (no network namespace here: it just
# never downloads). Slow (a root filesystem and the 2 GB stack): not in .ci/run.
# Needs root and a Debian host. Usage: tools/autograder_debian.sh PYTHON (a Python with this
# package installed, e.g. .venv/bin/python). AKIDA_DEBIAN_DIR: where (/tmp/akida-grade-debian).
set -euo pipefail
PYTHON="${1:?usage: $0 PYTHON}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${AKIDA_DEBIAN_DIR:-/tmp/akida-grade-debian}"
ROOTFS="$WORK/rootfs"
[ "$(id -u)" = 0 ] || { echo "autograder-debian: needs root (debootstrap, chroot)"; exit 2; }
. /etc/os-release
RELEASE="${VERSION_CODENAME:?not a Debian host}"
command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }

started=$SECONDS
mkdir -p "$WORK/debs"
unmount() { for m in dev/pts dev proc sys; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done; }
trap unmount EXIT
unmount
rm -rf "$ROOTFS"  # fresh every run; the downloaded .debs are kept in $WORK/debs
debootstrap --cache-dir="$WORK/debs" "$RELEASE" "$ROOTFS" http://deb.debian.org/debian \
    > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
echo "autograder-debian: Debian $RELEASE root filesystem in $((SECONDS - started)) s"
mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys"
mount --rbind /dev "$ROOTFS/dev"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# A host whose pip needs its own CA bundle (PIP_CERT: a TLS-inspecting proxy) lends it to the
# root filesystem's pip; Gradescope's network needs none.
CERT=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    cp -L "$PIP_CERT" "$ROOTFS/etc/host-pip-cert.pem"
    CERT=(PIP_CERT=/etc/host-pip-cert.pem)
fi

# The zip as an instructor makes it: no board, exactly make pythons' fast settings (two short
# epochs; tools/pythons.py holds them), so that the two runs' figures compare.
rm -f "$WORK/autograder.zip"
FAST=()
while IFS= read -r setting; do FAST+=(--option "$setting"); done \
    < <("$PYTHON" "$REPO/tools/pythons.py" --print-settings)
[ "${#FAST[@]}" -gt 0 ] || { echo "autograder-debian: no fast settings from tools/pythons.py"; exit 1; }
(cd "$REPO" && "$PYTHON" -m pytest_akida_grade gradescope-autograder "$WORK/autograder.zip" \
    --ini pyproject.toml --option "akida_points=hardware_quality = 0" "${FAST[@]}")
mkdir -p "$ROOTFS/autograder/submission" "$ROOTFS/autograder/results"
"$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$WORK/autograder.zip" "$ROOTFS/autograder/source"
cp "$REPO/student_models/three_convs.py" "$ROOTFS/autograder/submission/"

in_root() { chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 "${CERT[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
step=$SECONDS
in_root bash /autograder/source/setup.sh > "$WORK/setup.log" 2>&1 \
    || { tail -30 "$WORK/setup.log"; echo "autograder-debian: setup.sh FAILED"; exit 1; }
echo "autograder-debian: setup.sh in $((SECONDS - step)) s: $(grep 'akida-grade:' "$WORK/setup.log")"
step=$SECONDS
in_root bash /autograder/source/run_autograder > "$WORK/run.log" 2>&1 \
    || { tail -30 "$WORK/run.log"; echo "autograder-debian: run_autograder FAILED"; exit 1; }
echo "autograder-debian: run_autograder in $((SECONDS - step)) s"
"$PYTHON" - "$ROOTFS/autograder/results/results.json" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1], encoding="utf-8"))
tests = {t["name"]: t for t in result.get("tests", [])}
print(f"autograder-debian: score {result['score']}; "
      + "; ".join(f"{n} {t['status']}: {t['output'][:90]}" for n, t in tests.items()))
# The rules must pass; the accuracies must be graded (a figure), whatever the short training
# reached; hardware_quality has no board here.
failed = [n for n, t in tests.items() if t["status"] != "passed" and "hardware_quality" not in n
          and not ("accuracy]" in n and "% on " in t["output"])]
if len(tests) != 8 or failed:
    sys.exit(f"autograder-debian: FAILED: {failed or 'not the 8 checks'}")
EOF
echo "autograder-debian: PASSED in $((SECONDS - started)) s (logs in $WORK)"
