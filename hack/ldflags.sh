#!/usr/bin/env bash
# Prints the -ldflags that stamp a binary with what it is: its version
# (VERSION, default `git describe --tags --always --dirty`), git commit and
# build date, read by --version and the jobset_fleet_build_info metric
# (cmd/internal/manager/version.go). `make build` and hack/images/build.sh
# both use it, so every stamped build says the same.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pkg=github.com/jobset-fleet/jobset-fleet/cmd/internal/manager

version=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	commit+=-dirty
fi
# SOURCE_DATE_EPOCH, when set, makes the stamp reproducible.
date=$(date -u ${SOURCE_DATE_EPOCH:+-d @"$SOURCE_DATE_EPOCH"} +%Y-%m-%dT%H:%M:%SZ)

echo "-X $pkg.version=$version -X $pkg.gitCommit=$commit -X $pkg.buildDate=$date"
