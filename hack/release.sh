#!/usr/bin/env bash
# Writes a release of jobset-fleet into dist/ (make release VERSION=vX.Y.Z):
#
#   jobset-fleet-{hub,agent}-VERSION.image.tar  the images jobset-fleet/{hub,agent}:VERSION
#                                              (docker save: no registry is needed to
#                                              ship them; docker load or kind load
#                                              image-archive takes them)
#   install-hub.yaml, install-agent.yaml       config/hub and config/agent rendered with
#                                              those image references
#   jobset-fleet-agent-OS-ARCH                 join, unjoin, cordon, drain and the agent
#   kubectl-fleet-OS-ARCH                      the kubectl plugin
#   jobset-fleet-{hub,agent}-X.Y.Z.tgz         the Helm charts, version X.Y.Z, appVersion
#                                              VERSION (the charts' default image tag)
#   SHA256SUMS                                 sha256sum -c SHA256SUMS checks them all
#
# dist/ is emptied first, so a run writes the same set of files whatever ran
# before. Environment:
#   VERSION         required, vMAJOR.MINOR.PATCH[-PRERELEASE]
#   DIST            output directory (default: dist/ of the repository)
#   PLATFORMS       binaries' OS/ARCH list (default: linux/amd64)
#   RELEASE_PARTS   what to write (default: "images binaries manifests charts";
#                   the tests ask for "manifests charts", which need no Docker)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dist=${DIST:-$root/dist}
platforms=${PLATFORMS:-linux/amd64}
parts=" ${RELEASE_PARTS:-images binaries manifests charts} "
version=${VERSION:-}

step() { printf '==> %s\n' "$*"; }
die() { printf 'release: %s\n' "$*" >&2; exit 1; }
want() { [[ $parts == *" $1 "* ]]; }

[[ $version =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
	die "VERSION=${version:-<unset>}: want a v-prefixed semantic version such as v0.3.0 or v0.3.0-rc.1 (make release VERSION=v0.3.0)"
chart_version=${version#v}
# The images' timestamps and the --version stamp follow the commit, not the
# clock, unless the caller fixed one.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
export VERSION=$version

start=$SECONDS
step "release $version into $dist"
"$root/hack/tools.sh" helm kubectl >/dev/null
case $dist in / | "$root" | "$root"/config* | "$HOME") die "DIST=$dist: refusing to empty it" ;; esac
rm -rf "$dist"
mkdir -p "$dist"

if want images; then
	step "images jobset-fleet/hub:$version, jobset-fleet/agent:$version"
	"$root/hack/images/build.sh" hub="jobset-fleet/hub:$version" agent="jobset-fleet/agent:$version"
	for c in hub agent; do
		docker save -o "$dist/jobset-fleet-$c-$version.image.tar" "jobset-fleet/$c:$version"
		step "  jobset-fleet-$c-$version.image.tar ($(du -h "$dist/jobset-fleet-$c-$version.image.tar" | cut -f1))"
	done
fi

if want binaries; then
	ldflags=$("$root/hack/ldflags.sh")
	for p in $platforms; do
		os=${p%/*} arch=${p#*/}
		for cmd in agent:jobset-fleet-agent kubectl-fleet:kubectl-fleet; do
			out="$dist/${cmd#*:}-$os-$arch"
			step "binary ${out#"$dist"/}"
			(cd "$root" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "./cmd/${cmd%%:*}")
		done
	done
fi

if want manifests; then
	# An overlay of config/<component> that only sets the image, in a
	# scratch directory inside dist/ (kustomize loads bases by relative path).
	for c in hub agent; do
		step "install-$c.yaml (config/$c, image jobset-fleet/$c:$version)"
		overlay="$dist/.overlay-$c"
		mkdir -p "$overlay"
		cat >"$overlay/kustomization.yaml" <<-EOF
			apiVersion: kustomize.config.k8s.io/v1beta1
			kind: Kustomization
			resources:
			- $(realpath --relative-to="$overlay" "$root/config/$c")
			images:
			- name: jobset-fleet/$c
			  newName: jobset-fleet/$c
			  newTag: $version
		EOF
		{
			printf '# jobset-fleet %s: the %s, as config/%s installs it.\n' "$version" "$c" "$c"
			printf '# kubectl apply --server-side -f install-%s.yaml\n' "$c"
			"$root/bin/kubectl" kustomize "$overlay"
		} >"$dist/install-$c.yaml"
		rm -rf "$overlay"
		grep -q "image: jobset-fleet/$c:$version\$" "$dist/install-$c.yaml" ||
			die "install-$c.yaml does not reference jobset-fleet/$c:$version"
	done
fi

if want charts; then
	for c in hub agent; do
		step "chart jobset-fleet-$c-$chart_version.tgz (appVersion $version)"
		"$root/bin/helm" package "$root/charts/jobset-fleet-$c" --version "$chart_version" --app-version "$version" -d "$dist" >/dev/null
	done
fi

step "SHA256SUMS"
(cd "$dist" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
step "release $version written in $((SECONDS - start))s:"
(cd "$dist" && ls -l --block-size=K | tail -n +2 | awk '{printf "    %8s  %s\n", $5, $9}')
