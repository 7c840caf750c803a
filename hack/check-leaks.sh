#!/usr/bin/env bash
# Fails when a control-plane process started by the tests is still running
# after they ended: every suite must kill what it started, even on failure
# or timeout. Such a leftover has lost its parent (the test binary), so only
# orphans are considered: tests still running elsewhere are not touched.
# It kills what it finds, so a failed run does not poison the next one. A
# developer's own fleet (.dev/, `make dev-up`) is left alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pattern='(^|/)(kube-apiserver|kube-controller-manager|kube-scheduler|etcd|kwok|kwok-controller|jobset-fleet-agent|jobset-fleet-hub|kueue-manager)( |$)'

leaked=()
while read -r pid ppid args; do
	[[ $ppid == 1 ]] || continue
	[[ $args == *"$root/.dev/"* ]] && continue
	# Only processes of this checkout: its bin/ or envtest's temporary dirs.
	[[ $args == *"$root/bin/"* || $args == *"/tmp/"* || $args == *"/k8s_test_framework_"* ]] || continue
	leaked+=("$pid $args")
done < <(ps -eo pid=,ppid=,args= | grep -E "$pattern" | grep -v -E 'grep|check-leaks' || true)

if [[ ${#leaked[@]} -eq 0 ]]; then
	echo "==> no test processes left behind"
	exit 0
fi
echo "==> processes left behind by the tests (killing them):" >&2
for l in "${leaked[@]}"; do
	echo "    ${l:0:200}" >&2
	kill -9 "${l%% *}" 2>/dev/null || true
done
exit 1
