#!/bin/bash
# rootfs.sh DEST FILE... - copy each FILE and every shared library it loads
# into the root file system DEST, at the same paths; used by deploy/Dockerfile
# to assemble the runtime image FROM scratch (only what the binaries need).
#
# DEST gets Debian's merged-/usr layout (bin, lib, lib64, sbin -> usr/...).
# The libraries are what `ldd` lists (already the transitive closure),
# copied with symlinks resolved under the name the loader looks for. A
# library that ldd cannot find fails the script, so a missing runtime package
# fails the image build instead of the container.
set -euo pipefail
dest=$1
shift
mkdir -p "$dest/usr/bin" "$dest/usr/sbin" "$dest/usr/lib" "$dest/usr/lib64"
for d in bin sbin lib lib64; do
    [ -e "$dest/$d" ] || ln -s "usr/$d" "$dest/$d"
done

put() { # copy file $1 (dereferenced) to the same path under $dest
    [ -e "$dest$1" ] && return 0
    mkdir -p "$dest$(dirname "$1")"
    cp -L "$1" "$dest$1"
}

for f in "$@"; do
    put "$f"
    out=$(ldd "$f" 2>&1) || {
        grep -q 'not a dynamic executable' <<<"$out" && continue # a script or a static binary
        echo "rootfs.sh: ldd $f: $out" >&2
        exit 1
    }
    if grep -q 'not found' <<<"$out"; then
        echo "rootfs.sh: $f needs libraries that are not installed:" >&2
        grep 'not found' <<<"$out" >&2
        exit 1
    fi
    # "libx.so.1 => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"
    for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"); do
        put "$lib"
    done
done
