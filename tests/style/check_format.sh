#!/usr/bin/env bash
# check_format.sh CLANG_FORMAT - fails (listing the files) when a C source or
# header is not formatted as .clang-format says. `./dev format` fixes them.
set -euo pipefail
cf=${1:-clang-format}
cd "$(dirname "$0")/../.."
bad=()
while IFS= read -r -d '' f; do
    "$cf" --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(find bench cli include lib services tests examples -type f \( -name '*.c' -o -name '*.h' \) -print0)
if [ ${#bad[@]} -gt 0 ]; then
    printf 'not formatted (run ./dev format): %s\n' "${bad[@]}" >&2
    exit 1
fi
echo "all C sources formatted ($("$cf" --version))"
