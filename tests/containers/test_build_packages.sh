#!/usr/bin/env bash
# deploy/packages-build.txt covers every requirement of CMakeLists.txt: each
# pkg_check_modules() module's .pc file and each find_program() binary is
# owned (dpkg -S) by a package in the list or by one that a listed package
# depends on (apt-cache depends --recurse over Depends), and the compiler
# too. The list is what `./dev deps` and deploy/Dockerfile's build stage
# install, so a new CMake requirement without its package fails here, before
# the image build does. Needs the packages installed (./dev deps did that).
set -euo pipefail
src=${DBLD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
mapfile -t listed < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$src/deploy/packages-build.txt")
[ ${#listed[@]} -gt 0 ] || { echo "FAIL: deploy/packages-build.txt lists nothing"; exit 1; }

# Everything the listed packages pull in (Depends, recursively), names without :arch.
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${listed[@]}" 2>/dev/null |
    sed -n -e 's/^\([a-z0-9][^ <>]*\)$/\1/p' -e 's/^ *\(Pre\)\?Depends: \([^<>]*\)$/\2/p' |
    sed 's/:.*//' | sort -u)

fail=0
need() { # need WHAT FILE: the package owning FILE must be in the closure
    local what=$1 file=$2 pkg
    pkg=$(dpkg -S "$file" 2>/dev/null | head -n1 | cut -d: -f1) ||
        { echo "FAIL: $what: no installed package owns $file"; fail=1; return; }
    if grep -qx "$pkg" <<<"$closure"; then
        echo "ok: $what ($file) from $pkg"
    else
        echo "FAIL: $what needs package $pkg ($file), which deploy/packages-build.txt does not bring in"
        fail=1
    fi
}

mods=$(grep -o 'pkg_check_modules([^)]*)' "$src/CMakeLists.txt" | awk '{ print $NF }' | tr -d ')')
progs=$(grep -o 'find_program([^)]*REQUIRED)' "$src/CMakeLists.txt" | awk '{ print $2 }')
[ -n "$mods" ] || { echo "FAIL: found no pkg_check_modules() in CMakeLists.txt"; exit 1; }
for m in $mods; do
    pc=$(pkg-config --variable=pcfiledir "$m" 2>/dev/null)/$m.pc ||
        { echo "FAIL: pkg-config does not know module $m (run ./dev deps)"; fail=1; continue; }
    need "pkg_check_modules $m" "$(readlink -f "$pc")"
done
for p in $progs cc make cmake pkg-config; do
    path=$(command -v "$p") || { echo "FAIL: program $p not found (run ./dev deps)"; fail=1; continue; }
    need "program $p" "$(readlink -f "$path")"
done
[ $fail = 0 ] && echo "PASSED"
exit $fail
