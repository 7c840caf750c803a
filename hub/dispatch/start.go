package dispatch

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// maxWithdrawals bounds status.fleet.withdrawals (its CRD MaxItems).
const maxWithdrawals = 8

// StartTimeout is the JobSet's start deadline: its StartTimeoutAnnotation
// when set and valid, else the hub's. Zero or less: never withdrawn.
func StartTimeout(js *jobset.JobSet, hubDefault time.Duration) time.Duration {
	if v, ok := js.Annotations[fleet.StartTimeoutAnnotation]; ok {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
	}
	return hubDefault
}

// started reports whether a Pod of d's epoch ran, as the member reported:
// the agent's Started condition, a Job with ready, succeeded or failed
// Pods, a restart, or a terminal state. A Job only some of whose Pods run
// is not visible in the JobSet status: only the Started condition shows it.
func started(d *fleet.JobSetDispatch) bool {
	if !reported(d) {
		return false
	}
	if meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchStarted) {
		return true
	}
	s := &d.Status.JobSetStatus
	if s.TerminalState != "" || s.Restarts > 0 {
		return true
	}
	for _, rj := range s.ReplicatedJobsStatus {
		if rj.Ready+rj.Succeeded+rj.Failed > 0 {
			return true
		}
		for _, n := range rj.JobRestarts {
			if n > 0 {
				return true
			}
		}
	}
	return false
}

// capacityFingerprint identifies what a member reports of its capacity
// (allocatable and free resources): a member a JobSet was withdrawn from
// is a candidate again once it differs.
func capacityFingerprint(m inventory.Member) string {
	var parts []string
	for _, l := range []struct {
		prefix string
		list   corev1.ResourceList
	}{{"a.", m.Allocatable}, {"f.", m.Free}} {
		for name, q := range l.list {
			parts = append(parts, l.prefix+string(name)+"="+q.String())
		}
	}
	sort.Strings(parts)
	h := fnv.New64a()
	_, _ = h.Write([]byte(strings.Join(parts, "\n")))
	// Node by node capacity too: freed nodes may let it fit where the sums
	// did not move.
	_, _ = h.Write([]byte(nodesOf(m)))
	// And its Kueue's free quota: a queue that frees up may admit it now.
	if m.Kueue != nil {
		quotas, _ := json.Marshal(m.Kueue)
		_, _ = h.Write(quotas)
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// withdrawnExclusions are the members a JobSet was withdrawn from whose
// reported capacity has not changed since.
func withdrawnExclusions(fs jobset.FleetStatus, members map[string]inventory.Member) map[string]string {
	var out map[string]string
	for _, w := range fs.Withdrawals {
		m, ok := members[w.Cluster]
		if !ok || w.Capacity == "" || capacityFingerprint(m) != w.Capacity {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[w.Cluster] = fmt.Sprintf("no Pod of epoch %d started here within the start deadline; not a candidate until the member's capacity changes", w.Epoch)
	}
	return out
}

// withdrawnFrom lists the members of the withdrawals, for messages.
func withdrawnFrom(fs jobset.FleetStatus) string {
	parts := make([]string, 0, len(fs.Withdrawals))
	for _, w := range fs.Withdrawals {
		parts = append(parts, fmt.Sprintf("%s (epoch %d)", w.Cluster, w.Epoch))
	}
	return strings.Join(parts, ", ")
}

// withdrawing reports whether the placement fs records is being withdrawn.
func withdrawing(fs jobset.FleetStatus) bool {
	n := len(fs.Withdrawals)
	return n > 0 && fs.Withdrawals[n-1].Epoch == fs.Epoch && fs.Withdrawals[n-1].Cluster == fs.Cluster && fs.Cluster != ""
}
