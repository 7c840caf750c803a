package dispatch

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// reported reports whether the agent wrote status for this dispatch's epoch.
// Agents that do not fill observedEpoch are trusted once they synced: a
// dispatch object only ever carries one epoch.
func reported(d *fleet.JobSetDispatch) bool {
	return d.Status.ObservedEpoch == d.Spec.Epoch || (d.Status.ObservedEpoch == 0 && d.Status.LastSyncTime != nil)
}

// rejected reports whether the agent refused the dispatch: it runs no copy
// for it.
func rejected(d *fleet.JobSetDispatch) bool {
	c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchAccepted)
	return c != nil && c.Status == metav1.ConditionFalse
}

// rejectionMessage quotes the agent's refusal, bounded: it is the
// member's text, and goes into messages that list members.
func rejectionMessage(d *fleet.JobSetDispatch) string {
	c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchAccepted)
	if c == nil {
		return ""
	}
	return fleet.Bounded(c.Reason+": "+c.Message, fleet.MaxMemberReason)
}

// mirrorStatus is the user's JobSet status given the member's report: the
// member's status with the carried restarts added, the member's conditions,
// and the hub's own conditions and bookkeeping kept. Restarts never go
// backwards, a finished JobSet stays finished, and nothing changes until
// the member reported for this dispatch's epoch.
func mirrorStatus(current jobset.JobSetStatus, d *fleet.JobSetDispatch, fs jobset.FleetStatus) jobset.JobSetStatus {
	out := *current.DeepCopy()
	if current.TerminalState != "" {
		return out
	}
	out.Restarts = max(out.Restarts, fs.RestartsCarried)
	out.RestartsCountTowardsMax = max(out.RestartsCountTowardsMax, fs.RestartsCountTowardsMaxCarried)
	if d == nil || !reported(d) {
		return out
	}
	ms := d.Status.JobSetStatus.DeepCopy()
	out.Restarts = max(out.Restarts, ms.Restarts+fs.RestartsCarried)
	out.RestartsCountTowardsMax = max(out.RestartsCountTowardsMax, ms.RestartsCountTowardsMax+fs.RestartsCountTowardsMaxCarried)
	out.TerminalState = ms.TerminalState
	if len(current.ReplicatedJobsStatus) > 0 || !noJobCounts(ms.ReplicatedJobsStatus) {
		out.ReplicatedJobsStatus = ms.ReplicatedJobsStatus
	}
	out.PreviousInPlaceRestartAttempt = ms.PreviousInPlaceRestartAttempt
	out.CurrentInPlaceRestartAttempt = ms.CurrentInPlaceRestartAttempt

	conds := make([]metav1.Condition, 0, len(ms.Conditions)+len(hubConditionTypes))
	for _, c := range current.Conditions {
		if hubConditionTypes[c.Type] {
			conds = append(conds, c)
		}
	}
	for _, c := range ms.Conditions {
		if !hubConditionTypes[c.Type] {
			conds = append(conds, c)
		}
	}
	if q := d.Status.Queued; q != nil && ms.TerminalState == "" {
		conds = append(conds, queuedOnMember(current.Conditions, memberOf(d), q, d))
	}
	out.Conditions = conds
	return out
}

// noJobCounts reports whether replicated Job counts are all zero. Before
// the user's JobSet shows any, such counts say no more than none do, and
// the member reports them as soon as it takes the copy: leaving them out
// spares the hub a status write per JobSet that nobody could tell from no
// write. Once counts are shown they are mirrored as they are.
func noJobCounts(rs []jobset.ReplicatedJobStatus) bool {
	for _, r := range rs {
		if r.Ready != 0 || r.Succeeded != 0 || r.Failed != 0 || r.Active != 0 || r.Suspended != 0 || slices.ContainsFunc(r.JobRestarts, func(n int32) bool { return n != 0 }) {
			return false
		}
	}
	return true
}

// IsFinished reports whether a JobSet status is terminal.
func IsFinished(s *jobset.JobSetStatus) bool { return s.TerminalState != "" }

// TTLExpiry is when a finished hub JobSet with ttlSecondsAfterFinished is to
// be deleted: that many seconds after the hub first saw it finished
// (status.fleet.finishedObservedTime, the hub's clock). The member's
// lastTransitionTime is never used: its clock may be ahead or behind the
// hub's. ok is false when the JobSet is not finished, has no TTL, or the
// hub has not recorded when it saw it finish.
func TTLExpiry(js *jobset.JobSet, status *jobset.JobSetStatus) (expiry time.Time, ok bool) {
	ttl := js.Spec.TTLSecondsAfterFinished
	seen := fleetOf(status).FinishedObservedTime
	if ttl == nil || !IsFinished(status) || seen == nil {
		return time.Time{}, false
	}
	return seen.Add(time.Duration(*ttl) * time.Second), true
}
