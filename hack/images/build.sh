#!/usr/bin/env bash
# Builds the project's images from static binaries built here with go build:
#
#   hack/images/build.sh hub=IMAGE agent=IMAGE workload=IMAGE ...
#
# Each image is hack/images/<what>/Dockerfile: FROM scratch and one binary,
# so the docker daemon needs nothing from a registry. The binaries are built
# for linux on the daemon's architecture; kueue's is bin/kueue-manager, as
# hack/tools.sh builds it from the pinned Kueue (static, the host's
# architecture).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export DOCKER_BUILDKIT=0 # the classic builder: no buildkit image to pull

step() { printf '==> %s\n' "$*" >&2; }

if ! docker info >/dev/null 2>&1; then
	echo "images: the docker daemon is not reachable (on a machine without Docker, make e2e-kind-host-setup installs and starts it, as root)" >&2
	exit 1
fi
arch=$(docker info --format '{{.Architecture}}')
case $arch in
x86_64 | amd64) goarch=amd64 ;;
aarch64 | arm64) goarch=arm64 ;;
*) goarch=$(go env GOARCH) ;;
esac

# The same version stamp as `make build` (VERSION overrides git describe).
ldflags=$("$root/hack/ldflags.sh")

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

for spec in "$@"; do
	what=${spec%%=*} image=${spec#*=}
	case $what in
	hub) pkg=./cmd/hub binary=jobset-fleet-hub ;;
	agent) pkg=./cmd/agent binary=jobset-fleet-agent ;;
	workload) pkg=./e2e/kindfleet/workload binary=jobset-fleet-workload ;;
	kueue) pkg="" binary=kueue-manager ;;
	*) echo "images: unknown image $what (hub, agent, workload, kueue)" >&2; exit 2 ;;
	esac
	start=$SECONDS
	if [[ -z $pkg ]]; then
		"$root/hack/tools.sh" "$binary" >&2
		if [[ $(go env GOOS)/$(go env GOARCH) != linux/$goarch ]]; then
			echo "images: bin/$binary is built for $(go env GOOS)/$(go env GOARCH), the docker daemon runs linux/$goarch" >&2
			exit 1
		fi
		cp "$root/bin/$binary" "$ctx/$binary"
	else
		(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -ldflags "-s -w $ldflags" -o "$ctx/$binary" "$pkg")
	fi
	cp "$root/hack/images/$what/Dockerfile" "$ctx/Dockerfile"
	# The classic builder warns that it is deprecated on every build:
	# show its output only when the build fails.
	if ! docker build -q -t "$image" "$ctx" >"$ctx/build.log" 2>&1; then
		cat "$ctx/build.log" >&2
		exit 1
	fi
	step "$image: $binary ($(du -h "$ctx/$binary" | cut -f1)) in $((SECONDS - start))s"
	rm -f "$ctx/$binary"
done
