#!/usr/bin/env bash
# The local fleet, no Docker: three kwok clusters (hub, member-1, member-2) made
# of real control-plane processes, with the hub and both agents running as
# local processes.
#
#   hack/dev.sh run    bring it up, follow the logs, tear down on Ctrl-C
#   hack/dev.sh up     bring it up in the background (for scripts)
#   hack/dev.sh down   tear it down
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
# DEV_DIR and DEV_PORT_BASE let tests run a private fleet beside a developer's.
dev=${DEV_DIR:-$root/.dev}
export KWOK_WORKDIR=$dev/kwok
# kwokctl runs kubectl from PATH; it must be ours (a missing one is downloaded).
export PATH=$bin:$PATH
kubeconfig=$dev/kubeconfig
members=(member-1 member-2)

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# Ports of the local processes: the hub's, then 10 per agent.
port_base=${DEV_PORT_BASE:-18080}
hub_metrics_port=$port_base
hub_probe_port=$((port_base + 1))
hub_webhook_port=$((port_base + 2))
agent_port_base=$((port_base + 20))

create_cluster() {
	local name=$1
	if "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$name"; then
		step "cluster $name: already exists"
		return
	fi
	step "cluster $name: creating (kwok, binary runtime)"
	"$bin/kwokctl" create cluster --name "$name" --runtime binary \
		--kubeconfig "$kubeconfig" \
		--etcd-binary "$bin/etcd" \
		--kube-apiserver-binary "$bin/kube-apiserver" \
		--kube-controller-manager-binary "$bin/kube-controller-manager" \
		--kube-scheduler-binary "$bin/kube-scheduler" \
		--kwok-controller-binary "$bin/kwok" \
		--config "$root/e2e/kwok/stages.yaml" \
		--wait 2m >"$dev/logs/kwokctl-$name.log" 2>&1
	kubectl config rename-context "kwok-$name" "$name" >/dev/null
	kubectl config view --minify --flatten --context "$name" >"$dev/$name.kubeconfig"
}

# add_nodes member rack-count: two fake nodes per rack, each with 16 cpu,
# 64Gi and 4 GPUs; kwok keeps them Ready and runs their pods.
add_nodes() {
	local member=$1 racks=$2
	for ((r = 0; r < racks; r++)); do
		for n in 0 1; do
			local node="$member-rack$r-node$n"
			kubectl --context "$member" get node "$node" >/dev/null 2>&1 && continue
			# Capacity is part of the create: a later status patch races with
			# the kwok controller initializing the node.
			kubectl --context "$member" create -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $node
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: $node
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    rack: rack$r
status:
  capacity: {cpu: "16", memory: 64Gi, nvidia.com/gpu: "4", pods: "110"}
  allocatable: {cpu: "16", memory: 64Gi, nvidia.com/gpu: "4", pods: "110"}
NODE
		done
	done
	step "cluster $member: $((racks * 2)) fake nodes in $racks racks"
}

# install_webhooks context manifests port: the webhook configurations, pointed
# at a local process (https://localhost:port) instead of an in-cluster Service.
# The process injects its own CA bundle into them when it starts, and its
# certificate names localhost because it runs with
# --webhook-cert-extra-dns-names=localhost.
install_webhooks() {
	local context=$1 manifests=$2 port=$3
	awk -v base="https://localhost:$port" '
		/^    service:$/ { in_service = 1; next }
		in_service && /^      (name|namespace|port):/ { next }
		in_service && /^      path:/ { sub(/^      path: /, ""); print "    url: " base $0; in_service = 0; next }
		{ print }
	' "$manifests" | kubectl --context "$context" apply -f - >/dev/null
}

start_process() { # name, command...
	local name=$1
	shift
	"$@" >"$dev/logs/$name.log" 2>&1 &
	echo $! >"$dev/pids/$name"
}

up() {
	mkdir -p "$dev/logs" "$dev/pids" "$KWOK_WORKDIR"
	step "building tools and binaries"
	make -C "$root" --no-print-directory tools build
	for c in hub "${members[@]}"; do create_cluster "$c"; done
	add_nodes member-1 4
	add_nodes member-2 2

	step "installing CRDs on the hub"
	kubectl --context hub apply --server-side --force-conflicts \
		-f "$root/config/crd/bases" -f "$root/config/crd/cluster-inventory" >/dev/null
	# A CRD without status yet makes `kubectl wait` fail outright: retry.
	for _ in $(seq 60); do
		kubectl --context hub wait --for condition=established --timeout 30s crd --all >/dev/null 2>&1 && break
		sleep 1
	done

	for m in "${members[@]}"; do
		step "joining $m"
		(cd "$root" && "$bin/jobset-fleet-agent" join \
			--hub-kubeconfig "$dev/hub.kubeconfig" \
			--member-kubeconfig "$dev/$m.kubeconfig" \
			--cluster-name "$m" --labels "fleet.jobset.x-k8s.io/member=$m" \
			--output-kubeconfig "$dev/$m-agent-hub.kubeconfig") >"$dev/logs/join-$m.log" 2>&1 ||
			{ cat "$dev/logs/join-$m.log" >&2; exit 1; }
	done

	step "installing admission webhooks (served by the local processes)"
	kubectl --context hub create namespace jobset-fleet-system --dry-run=client -o yaml | kubectl --context hub apply -f - >/dev/null
	install_webhooks hub "$root/config/hub-webhook/manifests.yaml" "$hub_webhook_port"
	local i=0
	for m in "${members[@]}"; do
		install_webhooks "$m" "$root/config/webhook/manifests.yaml" "$((agent_port_base + 10 * i + 2))"
		i=$((i + 1))
	done

	step "starting the hub and the agents"
	start_process hub "$bin/jobset-fleet-hub" \
		--kubeconfig "$dev/hub.kubeconfig" --leader-elect=false \
		--webhook-port "$hub_webhook_port" --webhook-cert-dir "$dev/certs/hub" \
		--webhook-cert-extra-dns-names localhost \
		--metrics-bind-address ":$hub_metrics_port" --health-probe-bind-address ":$hub_probe_port"
	i=0
	for m in "${members[@]}"; do
		start_process "agent-$m" "$bin/jobset-fleet-agent" \
			--kubeconfig "$dev/$m.kubeconfig" \
			--hub-kubeconfig "$dev/$m-agent-hub.kubeconfig" --cluster-name "$m" \
			--leader-elect=false --topology-keys rack,kubernetes.io/hostname \
			--webhook-port "$((agent_port_base + 10 * i + 2))" --webhook-cert-dir "$dev/certs/agent-$m" \
			--webhook-cert-extra-dns-names localhost \
			--metrics-bind-address ":$((agent_port_base + 10 * i))" \
			--health-probe-bind-address ":$((agent_port_base + 10 * i + 1))"
		i=$((i + 1))
	done
	# Ready means serving webhooks with a certificate the apiserver trusts;
	# a process that exits instead fails the bring-up with its log.
	step "waiting for the hub and the agents to be ready"
	local probes=("hub:$hub_probe_port")
	i=0
	for m in "${members[@]}"; do
		probes+=("agent-$m:$((agent_port_base + 10 * i + 1))")
		i=$((i + 1))
	done
	for probe in "${probes[@]}"; do
		local name=${probe%%:*} port=${probe##*:} ready=0
		for _ in $(seq 120); do
			if ! kill -0 "$(cat "$dev/pids/$name")" 2>/dev/null; then
				echo "$name exited; its log:" >&2
				tail -20 "$dev/logs/$name.log" >&2
				exit 1
			fi
			if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
				ready=1
				break
			fi
			sleep 0.5
		done
		if ((!ready)); then
			echo "$name not ready after 60s; its log:" >&2
			tail -20 "$dev/logs/$name.log" >&2
			exit 1
		fi
	done
	cat <<MSG

The fleet is up. Kubeconfig: $kubeconfig (contexts: hub, member-1, member-2)

  export KUBECONFIG=$kubeconfig
  kubectl --context hub apply --server-side -f examples/pytorch.yaml
  kubectl --context hub get jobsets
  kubectl --context member-1 get jobs,pods,services --selector=jobset.sigs.k8s.io/jobset-name=pytorch
  kubectl --context hub get clusterprofiles -n fleet-system

Logs: $dev/logs/  (hub.log, agent-member-1.log, agent-member-2.log)
MSG
}

down() {
	step "stopping the hub and the agents"
	if [[ -d $dev/pids ]]; then
		for p in "$dev"/pids/*; do
			[[ -e $p ]] || continue
			kill "$(cat "$p")" 2>/dev/null || true
			rm -f "$p"
		done
	fi
	for c in hub "${members[@]}"; do
		if [[ -x $bin/kwokctl ]] && "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$c"; then
			step "cluster $c: deleting"
			"$bin/kwokctl" delete cluster --name "$c" --kubeconfig "$kubeconfig" >/dev/null 2>&1 || true
		fi
	done
	# kwokctl delete does not always stop every component it started (seen:
	# a kube-apiserver and kwok-controller outliving it): whatever still
	# runs from this fleet's directory goes too, before the directory does.
	if [[ -d $dev ]] && pgrep -f "^$dev/" >/dev/null; then
		step "stopping what is left of the fleet's processes"
		pkill -TERM -f "^$dev/" || true
		for _ in $(seq 1 50); do pgrep -f "^$dev/" >/dev/null || break; sleep 0.1; done
		pkill -KILL -f "^$dev/" || true
	fi
	rm -rf "$dev"
}

run() {
	trap teardown_on_failure EXIT
	up
	trap - EXIT
	trap 'echo; down; exit 0' INT TERM
	echo "Following logs; Ctrl-C tears everything down."
	for name in hub "${members[@]/#/agent-}"; do
		tail -n +1 -F "$dev/logs/$name.log" 2>/dev/null | sed -u "s/^/[$name] /" &
	done
	wait
}

# A failed bring-up tears down what it started: nothing may be left running
# that no `make dev-down` can find.
teardown_on_failure() {
	local rc=$?
	if ((rc != 0)); then
		echo "bring-up failed (exit $rc): tearing down what it started" >&2
		down
	fi
	exit "$rc"
}

case ${1:-} in
up)
	trap teardown_on_failure EXIT
	up
	trap - EXIT
	;;
down) down ;;
run) run ;;
*) echo "usage: $0 run|up|down" >&2; exit 2 ;;
esac
