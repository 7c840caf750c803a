#!/usr/bin/env bash
# Fails when a tracked file is over 1 MiB, outside the generated CRDs
# (config/crd) and test data (any testdata/ directory): build outputs and
# other large blobs do not belong in the repository. The JobSet CRD, the
# largest generated file, is under 1 MiB, but may grow with the API.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
limit=$((1024 * 1024))

large=()
while IFS= read -r -d '' path; do
	case $path in
	config/crd/* | testdata/* | */testdata/*) continue ;;
	esac
	# A file deleted in the work tree but still tracked is not checked.
	[[ -f $root/$path ]] || continue
	size=$(stat -c %s "$root/$path")
	if ((size > limit)); then
		large+=("$path ($((size / 1024)) KiB)")
	fi
done < <(git -C "$root" ls-files -z)

if ((${#large[@]} > 0)); then
	echo "tracked files over 1 MiB (build outputs belong in .gitignore; data in testdata/):" >&2
	printf '  %s\n' "${large[@]}" >&2
	exit 1
fi
