#!/usr/bin/env bash
# Fails when committed generated files differ from what the generators produce
# now. Generates into a scratch copy so the working tree is never touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cp -r "$root"/{go.mod,go.sum,api,config,hack,charts} "$scratch"/
cp -r "$root"/{spoke,hub,cmd,membership} "$scratch"/
"$root"/hack/generate.sh "$scratch" >/dev/null

stale=0
for d in api config charts; do
	if ! diff -r "$root/$d" "$scratch/$d" >"$scratch/diff.txt"; then
		echo "generated files under $d/ are stale:" >&2
		head -40 "$scratch/diff.txt" >&2
		stale=1
	fi
done
if ((stale)); then
	echo "run 'make manifests' and commit the result" >&2
	exit 1
fi
echo "generated code and manifests are up to date"
