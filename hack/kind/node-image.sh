#!/usr/bin/env bash
# Builds (or finds) everything the kind e2e clusters need, offline:
#
#   - the host: Docker, debootstrap, libseccomp-dev, a running dockerd (and, on
#     hosts without CAP_SYS_RESOURCE, ociwrap as dockerd's default runtime);
#   - the node image: kindest/node:$K8S_VERSION if Docker has it or can pull it,
#     otherwise jobset-fleet/kind-node:$K8S_VERSION built here from the Go
#     module proxy and Debian packages;
#   - the netd image (pod network for clusters created with disableDefaultCNI)
#     and the e2e test-server image.
#
# Idempotent and cached: binaries in bin/kind/, root filesystems as Docker
# images, the node image labelled with a hash of its inputs. Progress goes to
# stderr ("==> ..."); the node image to use is the last line on stdout and is
# also written to bin/kind/node-image. See hack/kind/README.md.
#
# The host is changed (packages installed, dockerd configured and started,
# sysctls raised) only when asked: `node-image.sh host` or E2E_SETUP_HOST=1.
# Otherwise a host that lacks any of it fails with what is missing and the
# command that sets it up (make e2e-kind-host-setup).
#
# Usage: node-image.sh          everything but the host setup
#        node-image.sh host     only the host setup (packages, dockerd)
#
# Environment:
#   KIND_NODE_IMAGE_SOURCE=auto|stock|local  (default auto: stock if available)
#   E2E_SETUP_HOST=1                         set the host up first, as `host` does
#   KIND_SKIP_HOST_SETUP=1                   neither set up nor check the host
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/hack/kind
out=$root/bin/kind
mkdir -p "$out"

K8S_VERSION=v1.37.2
CONTAINERD_VERSION=v2.3.4
RUNC_VERSION=v1.4.3
CRICTL_VERSION=v1.37.0
CNI_PLUGINS_VERSION=v1.10.0
COREDNS_VERSION=v1.14.6
DEBIAN_SUITE=bookworm
# The node: systemd and what the kubelet, kube-proxy and kubeadm call.
NODE_PACKAGES=(systemd dbus conntrack iptables nftables iproute2 kmod socat ebtables ipset
	fuse-overlayfs ca-certificates jq procps util-linux mount bash)
# kube-proxy and netd images.
SLIM_PACKAGES=(iptables nftables iproute2 conntrack kmod)

STOCK_IMAGE=kindest/node:$K8S_VERSION
LOCAL_IMAGE=jobset-fleet/kind-node:$K8S_VERSION
NETD_IMAGE=jobset-fleet/kind-netd:dev
TESTSERVER_IMAGE=jobset-fleet/kind-testserver:dev
INPUTS_LABEL=dev.jobset-fleet.kind.inputs

export DOCKER_BUILDKIT=0

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'node-image: %s\n' "$*" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/jobset-fleet-kind.XXXXXX")
containers=()
rootfs_pid=""
cleanup() {
	local c
	if [[ -n $rootfs_pid ]] && kill -0 "$rootfs_pid" 2>/dev/null; then
		pkill -TERM -P "$rootfs_pid" 2>/dev/null || true
		kill "$rootfs_pid" 2>/dev/null || true
		wait "$rootfs_pid" 2>/dev/null || true
	fi
	for c in "${containers[@]+"${containers[@]}"}"; do docker rm -f -v "$c" >/dev/null 2>&1 || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------- host setup

host_lacks_sys_resource() {
	# CAP_SYS_RESOURCE is capability 24.
	local bnd
	bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
	(((0x$bnd >> 24) & 1)) && return 1 || return 0
}

missing_packages() {
	local want=(docker.io debootstrap libseccomp-dev pkg-config gcc libc6-dev jq) p
	for p in "${want[@]}"; do
		if [[ $p == docker.io ]] && command -v dockerd >/dev/null; then continue; fi
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
	done
}

ensure_packages() {
	local missing
	mapfile -t missing < <(missing_packages)
	if [[ ${#missing[@]} -eq 0 ]]; then
		step "host packages: present"
		return
	fi
	step "host packages: installing ${missing[*]}"
	[[ $(id -u) -eq 0 ]] || die "need root to install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ociwrap is dockerd's default runtime only where the host needs it.
ociwrap_path=/usr/local/bin/jobset-fleet-ociwrap
docker_conf=/etc/docker/daemon.json

ensure_docker_runtime() {
	host_lacks_sys_resource || { step "dockerd runtime: host has CAP_SYS_RESOURCE, runc as is"; return 0; }
	local wrap=$ociwrap_path conf=$docker_conf
	build_local ociwrap
	if ! cmp -s "$out/ociwrap" "$wrap"; then
		step "dockerd runtime: installing $wrap"
		install -m 0755 "$out/ociwrap" "$wrap.tmp" && mv "$wrap.tmp" "$wrap"
	fi
	mkdir -p /etc/docker
	local cur='{}' want
	[[ -s $conf ]] && cur=$(cat "$conf")
	want=$(jq --arg p "$wrap" '.runtimes.ociwrap = {path: $p} | .["default-runtime"] = "ociwrap"' <<<"$cur")
	if [[ $(jq -S . <<<"$cur") != $(jq -S . <<<"$want") ]]; then
		step "dockerd runtime: ociwrap as default runtime in $conf"
		printf '%s\n' "$want" >"$conf"
		if docker info >/dev/null 2>&1 && [[ -s /var/run/docker.pid ]]; then
			# runtimes and default-runtime are reloaded on SIGHUP.
			kill -HUP "$(cat /var/run/docker.pid)"
			sleep 1
		fi
	else
		step "dockerd runtime: ociwrap already default"
	fi
}

# Every kubelet and containerd in every node container takes inotify
# instances from the host's one per-user budget; the distribution default
# (128) runs out at about six kind nodes, and the next kubelet dies with
# "inotify_init: too many open files" (kind's known-issues page says the same).
ensure_inotify() {
	local key want have
	for key in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288; do
		want=${key#*=}
		have=$(sysctl -n "${key%%=*}")
		if ((have >= want)); then
			step "sysctl ${key%%=*}: $have"
		elif [[ $(id -u) -eq 0 ]]; then
			sysctl -qw "$key"
			step "sysctl ${key%%=*}: $have -> $want"
		else
			step "WARNING: sysctl ${key%%=*} is $have; kind clusters with many nodes need $want (run as root or set it)"
		fi
	done
}

ensure_dockerd() {
	if docker info >/dev/null 2>&1; then
		step "dockerd: running"
		return
	fi
	[[ $(id -u) -eq 0 ]] || die "dockerd is not running and we are not root to start it"
	local log=/var/log/jobset-fleet-dockerd.log
	step "dockerd: starting in the background (log: $log)"
	# 9>&-: dockerd must not inherit this script's lock (fd 9), or every
	# later run waits for dockerd to exit.
	setsid nohup dockerd >>"$log" 2>&1 </dev/null 9>&- &
	local i
	for i in $(seq 1 60); do
		docker info >/dev/null 2>&1 && { step "dockerd: ready after ${i}s"; return; }
		sleep 1
	done
	tail -20 "$log" >&2
	die "dockerd did not become ready in 60s"
}

# check_host fails, changing nothing, when the host lacks what the setup
# above would give it, saying what and how to get it.
check_host() {
	local problems=() missing
	mapfile -t missing < <(missing_packages)
	[[ ${#missing[@]} -eq 0 ]] || problems+=("packages not installed: ${missing[*]}")
	if ! docker info >/dev/null 2>&1; then
		if command -v dockerd >/dev/null; then
			problems+=("dockerd is not running (or this user cannot reach it)")
		else
			problems+=("Docker is not installed")
		fi
	elif host_lacks_sys_resource && [[ $(jq -r '."default-runtime" // ""' "$docker_conf" 2>/dev/null) != ociwrap || ! -x $ociwrap_path ]]; then
		problems+=("this host lacks CAP_SYS_RESOURCE and dockerd's default runtime is not $ociwrap_path (ociwrap, see hack/kind/README.md)")
	fi
	local key have
	for key in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288; do
		have=$(cat "/proc/sys/$(tr . / <<<"${key%%=*}")" 2>/dev/null || echo 0)
		if ((have < ${key#*=})); then
			step "WARNING: sysctl ${key%%=*} is $have; kind clusters with many nodes need ${key#*=} (make e2e-kind-host-setup sets it)"
		fi
	done
	if [[ ${#problems[@]} -eq 0 ]]; then
		step "host: ready (Docker running, packages present)"
		return
	fi
	{
		echo "node-image: the host is not ready for kind clusters:"
		printf '  - %s\n' "${problems[@]}"
		echo "Nothing was changed. To install the packages, configure and start dockerd and raise the inotify limits (as root):"
		echo "  make e2e-kind-host-setup        # or: E2E_SETUP_HOST=1 make e2e-kind"
	} >&2
	exit 1
}

# --------------------------------------------------------------- Go binaries

k8s_ldflags() {
	local date major minor f="" pkg
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	major=${K8S_VERSION#v}; major=${major%%.*}
	minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		f="$f -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		f="$f -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
	done
	echo "-s -w $f"
}

# fresh NAME KEY: true if bin/kind/NAME exists and was built with KEY (version, flags).
fresh() { [[ -x $out/$1 && -f $out/.$1.version && $(cat "$out/.$1.version") == "$2" ]]; }
stamp() { echo "$2" >"$out/.$1.version"; }

# build_k8s NAME: a Kubernetes command from the hack/tools module.
build_k8s() {
	local name=$1
	if fresh "$name" "$K8S_VERSION"; then step "$name: present"; return; fi
	step "$name: building k8s.io/kubernetes/cmd/$name@$K8S_VERSION (cold: ~4 min)"
	local start=$SECONDS
	(cd "$root/hack/tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$(k8s_ldflags)" \
		-o "$out/$name.tmp" "k8s.io/kubernetes/cmd/$name")
	mv "$out/$name.tmp" "$out/$name"
	stamp "$name" "$K8S_VERSION"
	step "$name: built in $((SECONDS - start))s"
}

# install_mod NAME VERSION [env...] -- go install args: a command at a pinned version.
install_mod() {
	local name=$1 version=$2
	shift 2
	local env=()
	while [[ $1 != -- ]]; do env+=("$1"); shift; done
	shift
	# The stamp covers the flags too, so a changed recipe rebuilds.
	local key="$version ${env[*]} $*"
	if fresh "$name" "$key"; then step "$name: present"; return; fi
	step "$name: building $version"
	local start=$SECONDS gobin=$tmp/gobin-$name
	mkdir -p "$gobin"
	env GOBIN="$gobin" "${env[@]}" go install -trimpath "$@"
	local f
	for f in "$gobin"/*; do mv "$f" "$out/$(basename "$f")"; done
	stamp "$name" "$key"
	step "$name: built in $((SECONDS - start))s"
}

# Programs of this repository are always rebuilt: the Go cache makes that
# quick, and the output is reproducible (no VCS stamp).
# build_local NAME...: hack/kind/NAME for each NAME, in one go build.
build_local() {
	local d=$tmp/local-$RANDOM n pkgs=()
	mkdir -p "$d"
	for n in "$@"; do pkgs+=("./hack/kind/$n"); done
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$d/" "${pkgs[@]}")
	for n in "$@"; do mv "$d/$n" "$out/$n"; done
}

build_binaries() {
	local tags="no_aufs no_zfs no_btrfs no_devmapper"
	install_mod containerd "$CONTAINERD_VERSION" CGO_ENABLED=0 -- -ldflags "-s -w" -tags "$tags" \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
	install_mod runc "$RUNC_VERSION" CGO_ENABLED=1 -- -tags "seccomp urfave_cli_no_docs netgo osusergo" \
		-ldflags "-s -w -X main.version=${RUNC_VERSION#v} -extldflags -static" \
		"github.com/opencontainers/runc@$RUNC_VERSION"
	install_mod crictl "$CRICTL_VERSION" CGO_ENABLED=0 -- -ldflags "-s -w" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	local p plugins=()
	for p in main/bridge main/ptp main/loopback ipam/host-local meta/portmap; do
		plugins+=("github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION")
	done
	install_mod bridge "$CNI_PLUGINS_VERSION" CGO_ENABLED=0 -- -ldflags "-s -w" "${plugins[@]}"
	install_mod coredns "$COREDNS_VERSION" CGO_ENABLED=0 -- -ldflags "-s -w" \
		"github.com/coredns/coredns@$COREDNS_VERSION"
	build_k8s kubelet
	build_k8s kubeadm
	build_k8s kube-proxy
	# The control plane and kubectl: shared with the integration tests.
	"$root/hack/tools.sh" kube-apiserver kube-controller-manager kube-scheduler kubectl etcd >&2
	step "in-repo programs: ociwrap, pause, netd, testserver"
	build_local ociwrap pause netd testserver
}

# ------------------------------------------------------------- root images

# apt_mirror: the host's Debian mirror for $DEBIAN_SUITE (empty: debootstrap's default).
apt_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v suite="$DEBIAN_SUITE" '
			/^URIs:/ {uri = $2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == suite) ok = 1}
			/^$/ {if (ok && uri ~ /debian\/?$/) {print uri; exit} uri = ""; ok = 0}
			END {if (ok && uri ~ /debian\/?$/) print uri}' "$f" | head -1
	done | head -1
	grep -hE "^deb [^ ]+ $DEBIAN_SUITE " /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1
	return 0
}

# rootfs_image NAME PACKAGE...: a Debian minbase root filesystem with the
# packages, imported as a Docker image; prints its tag.
rootfs_image() {
	local name=$1
	shift
	local hash tag
	hash=$(printf '%s\n' "$DEBIAN_SUITE" "$@" | sha256sum | cut -c1-12)
	tag=jobset-fleet/kind-rootfs:$name-$DEBIAN_SUITE-$hash
	if docker image inspect "$tag" >/dev/null 2>&1; then
		step "rootfs $name: $tag present"
		echo "$tag"
		return
	fi
	local dir=$tmp/rootfs-$name mirror start=$SECONDS
	mirror=$(apt_mirror | head -1 || true)
	step "rootfs $name: debootstrap $DEBIAN_SUITE with $* (~2 min)"
	local inc
	inc=$(IFS=,; echo "$*")
	debootstrap --variant=minbase --include="$inc" "$DEBIAN_SUITE" "$dir" ${mirror:+"$mirror"} \
		>"$tmp/debootstrap-$name.log" 2>&1 || { tail -30 "$tmp/debootstrap-$name.log" >&2; die "debootstrap failed"; }
	rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/usr/share/doc/* \
		"$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*.log
	tar -C "$dir" --numeric-owner -c . | docker import - "$tag" >/dev/null
	rm -rf "$dir"
	step "rootfs $name: $tag in $((SECONDS - start))s"
	echo "$tag"
}

# ---------------------------------------------------------------- images

# docker_build TAG DIR: build DIR/Dockerfile as TAG (quietly).
docker_build() {
	docker build -q -t "$1" "$2" >/dev/null 2>"$tmp/build.log" || { cat "$tmp/build.log" >&2; die "docker build $1 failed"; }
}

# image_current TAG HASH: TAG exists and was built from inputs hashing to HASH.
image_current() {
	[[ $(docker image inspect -f "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$1" 2>/dev/null) == "$2" ]]
}

# A scratch image with one static binary (plus /tmp and a passwd file).
scratch_image() { # tag, binary, entrypoint-json
	local tag=$1 bin=$2 entry=$3 dir hash
	hash=$( (echo "scratch-v1 $entry"; sha256sum <"$bin") | sha256sum | cut -c1-16)
	image_current "$tag" "$hash" && return
	dir=$tmp/img-$(basename "$bin")-$RANDOM
	mkdir -p "$dir/fs/usr/local/bin" "$dir/fs/tmp" "$dir/fs/etc"
	chmod 1777 "$dir/fs/tmp"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$dir/fs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/fs/etc/group"
	cp "$bin" "$dir/fs/usr/local/bin/"
	cat >"$dir/Dockerfile" <<-EOF
		FROM scratch
		COPY fs/ /
		ENV PATH=/usr/local/bin:/usr/bin:/bin
		LABEL $INPUTS_LABEL=$hash
		ENTRYPOINT $entry
	EOF
	docker_build "$tag" "$dir"
}

# A Debian image (iptables, iproute2, conntrack) with one binary; its iptables
# commands pick the node's backend on first use.
debian_image() { # tag, base, binary, entrypoint-json
	local tag=$1 base=$2 bin=$3 entry=$4 dir hash
	hash=$( (echo "debian-v1 $base $entry"; sha256sum <"$bin"; sha256sum <"$here/images/iptables-select") |
		sha256sum | cut -c1-16)
	image_current "$tag" "$hash" && return
	dir=$tmp/img-$(basename "$bin")-$RANDOM
	mkdir -p "$dir/fs/usr/local/bin" "$dir/fs/usr/sbin"
	cp "$bin" "$dir/fs/usr/local/bin/"
	cp "$here/images/iptables-select" "$dir/fs/usr/sbin/iptables-select"
	cat >"$dir/Dockerfile" <<-EOF
		FROM $base
		COPY fs/ /
		RUN chmod 0755 /usr/sbin/iptables-select && for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do ln -sf iptables-select /usr/sbin/\$c; done
		LABEL $INPUTS_LABEL=$hash
		ENTRYPOINT $entry
	EOF
	docker_build "$tag" "$dir"
}

build_component_images() {
	local slim=$1
	step "component images: kubeadm's list for $K8S_VERSION"
	mapfile -t kubeadm_images < <("$out/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
	[[ ${#kubeadm_images[@]} -gt 0 ]] || die "kubeadm config images list returned nothing"
	local img
	component_images=()
	for img in "${kubeadm_images[@]}"; do
		case $img in
		*/kube-apiserver:* | */kube-controller-manager:* | */kube-scheduler:*)
			local n=${img##*/}; n=${n%%:*}
			scratch_image "$img" "$root/bin/$n" "[\"/usr/local/bin/$n\"]" ;;
		*/kube-proxy:*) debian_image "$img" "$slim" "$out/kube-proxy" '["/usr/local/bin/kube-proxy"]' ;;
		*/etcd:*) scratch_image "$img" "$root/bin/etcd" '["/usr/local/bin/etcd"]' ;;
		*/coredns:*) scratch_image "$img" "$out/coredns" '["/usr/local/bin/coredns"]' ;;
		*/pause:*) scratch_image "$img" "$out/pause" '["/usr/local/bin/pause"]'; PAUSE_IMAGE=$img ;;
		*) die "no recipe for kubeadm image $img" ;;
		esac
		step "  $img"
		component_images+=("$img")
	done
	[[ -n ${PAUSE_IMAGE:-} ]] || die "kubeadm listed no pause image"
}

build_aux_images() {
	local slim=$1
	debian_image "$NETD_IMAGE" "$slim" "$out/netd" '["/usr/local/bin/netd"]'
	step "netd image: $NETD_IMAGE"
	scratch_image "$TESTSERVER_IMAGE" "$out/testserver" '["/usr/local/bin/testserver"]'
	step "test-server image: $TESTSERVER_IMAGE"
}

# The node image's input hash: everything that goes into it.
node_inputs_hash() {
	local base=$1
	{
		echo "$K8S_VERSION $base"
		docker image inspect -f '{{.Id}}' "$base"
		local img
		for img in "${component_images[@]}"; do echo "$img $(docker image inspect -f '{{.Id}}' "$img")"; done
		(cd "$out" && sha256sum containerd ctr containerd-shim-runc-v2 runc crictl ociwrap kubelet kubeadm \
			bridge ptp loopback host-local portmap)
		sha256sum <"$root/bin/kubectl"
		(cd "$here" && find node -type f -print0 | sort -z | xargs -0 sha256sum)
		sha256sum <"$0" # by content: the path it was called by does not matter
	} | sha256sum | cut -c1-16
}

build_node_image() {
	local base=$1 hash
	hash=$(node_inputs_hash "$base")
	if image_current "$LOCAL_IMAGE" "$hash"; then
		step "node image: $LOCAL_IMAGE up to date ($hash)"
		return
	fi
	local start=$SECONDS ctx=$tmp/node
	step "node image: building $LOCAL_IMAGE ($hash)"
	mkdir -p "$ctx/fs/usr/local/bin" "$ctx/fs/usr/local/sbin" "$ctx/fs/usr/bin" "$ctx/fs/opt/cni/bin" "$ctx/images"
	cp -a "$here/node/." "$ctx/fs/"
	sed -i "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|" "$ctx/fs/etc/containerd/config.toml"
	cp "$out/containerd" "$out/ctr" "$out/containerd-shim-runc-v2" "$out/crictl" "$ctx/fs/usr/local/bin/"
	cp "$out/runc" "$ctx/fs/usr/local/sbin/runc.real"
	cp "$out/ociwrap" "$ctx/fs/usr/local/sbin/runc"
	cp "$out/kubelet" "$out/kubeadm" "$root/bin/kubectl" "$ctx/fs/usr/bin/"
	cp "$out/bridge" "$out/ptp" "$out/loopback" "$out/host-local" "$out/portmap" "$ctx/fs/opt/cni/bin/"
	echo -n "$K8S_VERSION" >"$ctx/fs/kind/version"
	cat >"$ctx/Dockerfile" <<-EOF
		FROM $base
		COPY fs/ /
		RUN set -e; \\
		    chmod 0755 /usr/local/bin/* /usr/local/sbin/* /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl /opt/cni/bin/*; \\
		    : "no units that only make sense on a real machine"; \\
		    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
		          /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
		          /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
		          /lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service; \\
		    systemctl mask systemd-binfmt.service getty.target systemd-udevd.service >/dev/null 2>&1 || true; \\
		    echo ReadKMsg=no >>/etc/systemd/journald.conf; \\
		    ln -sf /lib/systemd/systemd /sbin/init; \\
		    systemctl enable containerd.service kubelet.service; \\
		    mkdir -p /etc/kubernetes/manifests /etc/cni/net.d /var/lib/kubelet
		ENV container=docker
		STOPSIGNAL SIGRTMIN+3
		ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
	EOF
	docker_build "$LOCAL_IMAGE-stage" "$ctx"

	step "node image: importing ${#component_images[@]} images into containerd (k8s.io, pinned)"
	local c
	c=$(docker run -d --privileged --entrypoint /bin/sleep "$LOCAL_IMAGE-stage" infinity)
	containers+=("$c")
	docker exec "$c" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &
		for i in $(seq 1 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
		ctr version >/dev/null 2>&1 && ctr oci spec 2>/dev/null | jq "del(.process.rlimits)" >/etc/containerd/cri-base.json'
	local img
	for img in "${component_images[@]}"; do
		docker save "$img" | docker exec -i "$c" ctr -n k8s.io images import \
			--label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - \
			>/dev/null 2>"$tmp/import.log" || { cat "$tmp/import.log" >&2; die "importing $img failed"; }
	done
	# PID 1 of this container (sleep) does not reap: wait until containerd is gone or a zombie.
	docker exec "$c" bash -c 'pkill -x containerd
		while ps -C containerd -o stat= | grep -qv "^Z"; do sleep 0.2; done
		rm -rf /tmp/* /run/containerd'
	local previous
	previous=$(docker image inspect -f '{{.Id}}' "$LOCAL_IMAGE" 2>/dev/null || true)
	docker commit \
		--change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
		--change 'CMD []' \
		--change "LABEL $INPUTS_LABEL=$hash" \
		"$c" "$LOCAL_IMAGE" >/dev/null
	docker rm -f -v "$c" >/dev/null
	docker rmi "$LOCAL_IMAGE-stage" >/dev/null 2>&1 || true
	# The image it replaces is 1.5 GB; keep it only while a container uses it.
	[[ -z $previous ]] || docker rmi "$previous" >/dev/null 2>&1 || true
	step "node image: $LOCAL_IMAGE built in $((SECONDS - start))s"
}

# ------------------------------------------------------------------- main

stock_available() {
	case ${KIND_NODE_IMAGE_SOURCE:-auto} in
	local) return 1 ;;
	stock | auto) ;;
	*) die "KIND_NODE_IMAGE_SOURCE must be auto, stock or local" ;;
	esac
	if docker image inspect "$STOCK_IMAGE" >/dev/null 2>&1; then return 0; fi
	# A failed pull is remembered for an hour (it costs seconds offline).
	local nopull=$out/.stock-unavailable
	if [[ ${KIND_NODE_IMAGE_SOURCE:-auto} == auto && -n $(find "$nopull" -mmin -60 2>/dev/null) ]]; then
		step "node image: $STOCK_IMAGE not pullable (checked within the hour), building $LOCAL_IMAGE"
		return 1
	fi
	step "node image: trying docker pull $STOCK_IMAGE (30s)"
	if timeout 30 docker pull -q "$STOCK_IMAGE" >/dev/null 2>&1; then
		rm -f "$nopull"
		return 0
	fi
	touch "$nopull"
	[[ ${KIND_NODE_IMAGE_SOURCE:-auto} == stock ]] && die "cannot pull $STOCK_IMAGE"
	step "node image: no $STOCK_IMAGE, building $LOCAL_IMAGE"
	return 1
}

main() {
	local start=$SECONDS
	# One run at a time per checkout (tests and make targets may overlap).
	exec 9>"$out/.lock"
	if ! flock -n 9; then
		step "waiting for another node-image.sh run to finish"
		flock 9
	fi
	if [[ ${1:-} == host || ${E2E_SETUP_HOST:-} == 1 ]]; then
		step "host setup (asked for): packages, dockerd, inotify limits"
		ensure_packages
		ensure_docker_runtime
		ensure_dockerd
		ensure_inotify
	elif [[ -z ${KIND_SKIP_HOST_SETUP:-} ]]; then
		check_host
	fi
	if [[ ${1:-} == host ]]; then
		step "host ready in $((SECONDS - start))s"
		return
	fi
	local image
	if stock_available; then
		image=$STOCK_IMAGE
		step "node image: using $STOCK_IMAGE"
		build_local netd testserver
		local slim
		slim=$(rootfs_image slim "${SLIM_PACKAGES[@]}")
		build_aux_images "$slim"
	else
		image=$LOCAL_IMAGE
		# debootstrap is mostly download and unpack: run it next to the Go builds.
		(
			rootfs_image slim "${SLIM_PACKAGES[@]}" >"$tmp/slim.tag"
			rootfs_image node "${NODE_PACKAGES[@]}" >"$tmp/node.tag"
		) &
		rootfs_pid=$!
		build_binaries
		wait "$rootfs_pid" || { rootfs_pid=""; die "root filesystem images failed"; }
		rootfs_pid=""
		local slim base
		slim=$(cat "$tmp/slim.tag")
		base=$(cat "$tmp/node.tag")
		build_component_images "$slim"
		build_aux_images "$slim"
		build_node_image "$base"
	fi
	echo "$image" >"$out/node-image"
	printf 'NODE_IMAGE=%s\nNETD_IMAGE=%s\nTESTSERVER_IMAGE=%s\n' "$image" "$NETD_IMAGE" "$TESTSERVER_IMAGE" >"$out/images.env"
	step "done in $((SECONDS - start))s: node image $image (also in bin/kind/node-image, bin/kind/images.env)"
	echo "$image"
}

main "$@"
