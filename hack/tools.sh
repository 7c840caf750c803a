#!/usr/bin/env bash
# Builds the real control-plane binaries the tests run against into bin/.
# Everything comes from the Go module proxy; a binary that already exists is
# skipped, so a warm run takes seconds. Cold, on 2 cores: about 25 minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="${BIN_DIR:-$root/bin}"
mkdir -p "$bin"

k8s_version=v1.37.2
kwok_version=v0.8.0
# Not in the default list below: only `make lint` asks for it.
golangci_lint_version=v2.15.0
# Kueue's version is pinned in hack/kueue/go.mod. Not in the default list
# either: only the Kueue tests and `make run KUEUE=1` ask for kueue-manager
# (cold: ~6 min on 2 cores; its module download ~40 s).
# helm: only `make verify-charts` asks for it; pinned in hack/helm/go.mod.

# kubectl refuses a server whose version it cannot parse, and kwokctl reads
# versions off the binaries, so stamp the real release into every k8s binary.
k8s_ldflags() {
	local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	local major=${k8s_version#v}; major=${major%%.*}
	local minor=${k8s_version#v*.}; minor=${minor%%.*}
	local f=""
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		f="$f -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		f="$f -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
	done
	echo "-s -w $f"
}

step() { printf '==> %s\n' "$*"; }

build() { # name, module dir, package, ldflags
	local name=$1 dir=$2 pkg=$3 ldflags=$4
	if [[ -x "$bin/$name" ]]; then
		step "$name: present, skipping"
		return
	fi
	step "$name: building $pkg (first time can take minutes)"
	local start=$SECONDS
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
	mv "$bin/$name.tmp" "$bin/$name"
	step "$name: built in $((SECONDS - start))s"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kwok kwokctl)

for t in "${want[@]}"; do
	case $t in
	etcd) build etcd "$root/hack/etcd" . "-s -w" ;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl)
		build "$t" "$root/hack/tools" "k8s.io/kubernetes/cmd/$t" "$(k8s_ldflags)" ;;
	kueue-manager)
		# Rebuilt when the pin in hack/kueue/go.mod moves.
		kueue_version=$(cd "$root/hack/kueue" && go list -m -f '{{.Version}}' sigs.k8s.io/kueue)
		if [[ -x "$bin/$t" && -f "$bin/$t.version" && $(<"$bin/$t.version") == "$kueue_version" ]]; then
			step "$t: $kueue_version present, skipping"; continue
		fi
		rm -f "$bin/$t"
		build "$t" "$root/hack/kueue" sigs.k8s.io/kueue/cmd/kueue \
			"-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue_version"
		echo "$kueue_version" >"$bin/$t.version" ;;
	kwok | kwokctl)
		if [[ -x "$bin/$t" ]]; then step "$t: present, skipping"; continue; fi
		step "$t: installing sigs.k8s.io/kwok/cmd/$t@$kwok_version"
		start=$SECONDS
		GOBIN="$bin" CGO_ENABLED=0 go install -trimpath \
			\
			"sigs.k8s.io/kwok/cmd/$t@$kwok_version"
		step "$t: built in $((SECONDS - start))s" ;;
	helm)
		# Rebuilt when the pin in hack/helm/go.mod moves.
		helm_version=$(cd "$root/hack/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v4)
		if [[ -x "$bin/$t" && $("$bin/$t" version --template '{{.Version}}' 2>/dev/null) == "$helm_version" ]]; then
			step "$t: $helm_version present, skipping"; continue
		fi
		rm -f "$bin/$t"
		build helm "$root/hack/helm" helm.sh/helm/v4/cmd/helm \
			"-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" ;;
	golangci-lint)
		# Rebuilt when the pin above moves.
		if [[ -x "$bin/$t" && $("$bin/$t" version --short 2>/dev/null) == "${golangci_lint_version#v}" ]]; then
			step "$t: $golangci_lint_version present, skipping"; continue
		fi
		step "$t: installing github.com/golangci/golangci-lint/v2/cmd/$t@$golangci_lint_version (first time can take minutes)"
		start=$SECONDS
		GOBIN="$bin" CGO_ENABLED=0 go install -trimpath \
			"github.com/golangci/golangci-lint/v2/cmd/$t@$golangci_lint_version"
		step "$t: built in $((SECONDS - start))s" ;;
	*) echo "unknown tool $t" >&2; exit 1 ;;
	esac
done
step "tools ready in $bin"
