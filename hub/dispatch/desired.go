package dispatch

import (
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Finalizers and conditions the hub owns. Its placement bookkeeping lives
// in the JobSet's status.fleet, which only the hub writes.
const (
	// JobSetFinalizer keeps a hub JobSet until its member copy is gone.
	JobSetFinalizer = "fleet.jobset.x-k8s.io/dispatch"
	// DispatchFinalizer keeps a JobSetDispatch until the hub knows its
	// member copy is stopped, so the dispatch, and the proof it carries,
	// outlives the copy.
	DispatchFinalizer = "fleet.jobset.x-k8s.io/member-cleanup"

	// ConditionDispatched is True while a member runs the JobSet; False with
	// the reason (NoFit, MemberLost, InvalidPlacement) while it is pending.
	ConditionDispatched = "Dispatched"
	// ConditionMemberStatusStale is True when the status shown may be out of
	// date because the member's heartbeat is not fresh, and says what the
	// JobSet waits for when its member is lost (AwaitingFence).
	ConditionMemberStatusStale = "MemberStatusStale"
)

// podSecurityLabelPrefix prefixes the Pod Security labels of a namespace;
// a dispatch carries those of its JobSet's hub namespace.
const podSecurityLabelPrefix = "pod-security.kubernetes.io/"

// OnMemberLost values (annotation fleet.jobset.x-k8s.io/on-member-lost).
const (
	// OnMemberLostRedispatch (the default) runs the JobSet elsewhere once
	// its copy on the lost member is confirmed stopped: at most one copy
	// ever runs.
	OnMemberLostRedispatch = "Redispatch"
	// OnMemberLostAtLeastOnce runs it elsewhere as soon as the member counts
	// as lost, without proof that its copy stopped: faster, but two copies
	// may run for a while. The agent's self-fencing shortens the overlap.
	OnMemberLostAtLeastOnce = "RedispatchAtLeastOnce"
	// OnMemberLostFail fails the JobSet.
	OnMemberLostFail = "Fail"
	// OnMemberLostWait keeps waiting for the member to return.
	OnMemberLostWait = "Wait"
)

// OnMemberLostPolicies lists the valid values, for validation messages.
var OnMemberLostPolicies = []string{OnMemberLostRedispatch, OnMemberLostAtLeastOnce, OnMemberLostFail, OnMemberLostWait}

// Reasons of hub conditions and events.
const (
	ReasonDispatched       = "Dispatched"
	ReasonRedispatched     = "Redispatched"
	ReasonNoFit            = "NoFit"
	ReasonInvalidPlacement = "InvalidPlacement"
	ReasonMemberLost       = "MemberLost"
	ReasonAwaitingFence    = "AwaitingFence"
	ReasonHeartbeatStale   = "HeartbeatStale"
	ReasonHeartbeatFresh   = "HeartbeatFresh"
	ReasonSpecPropagated   = "SpecPropagated"
	ReasonSuspending       = "Suspending"
	ReasonResuming         = "Resuming"
	ReasonAdopted          = "Adopted"
	ReasonDispatchDeleted  = "DispatchDeleted"
	ReasonDeleting         = "DeletingDispatch"
	ReasonReleased         = "DispatchReleased"
	ReasonCopyStopped      = "MemberCopyStopped"
	ReasonVolumesNotMoved  = "VolumesNotMoved"
	// ReasonDispatchFailed: the hub could not create the JobSetDispatch; it
	// retries the same placement (same member, same epoch).
	ReasonDispatchFailed = "DispatchFailed"
	// ReasonDispatchRefused: the member's agent refused the dispatch
	// (Accepted=False); the JobSet is placed elsewhere.
	ReasonDispatchRefused = "DispatchRefused"
)

// hubConditionTypes are set by the hub, never copied from the member.
var hubConditionTypes = map[string]bool{ConditionDispatched: true, ConditionMemberStatusStale: true}

// fleetOf is the hub's bookkeeping in a status (zero when none).
func fleetOf(s *jobset.JobSetStatus) jobset.FleetStatus {
	if s.Fleet == nil {
		return jobset.FleetStatus{}
	}
	return *s.Fleet
}

// OnMemberLost is the JobSet's member-loss policy.
func OnMemberLost(js *jobset.JobSet) string {
	switch v := js.Annotations[fleet.OnMemberLostAnnotation]; v {
	case OnMemberLostAtLeastOnce, OnMemberLostFail, OnMemberLostWait:
		return v
	}
	return OnMemberLostRedispatch
}

// Template is what the member must run for a hub JobSet: the user's labels,
// annotations and spec, without the hub's own keys, managed by the member's
// built-in controller, with maxRestarts reduced by the restarts already
// spent on earlier placements.
func Template(js *jobset.JobSet, fs jobset.FleetStatus) fleet.JobSetTemplate {
	t := fleet.JobSetTemplate{
		Labels:      withoutFleetKeys(js.Labels),
		Annotations: withoutFleetKeys(js.Annotations),
	}
	js.Spec.DeepCopyInto(&t.Spec)
	t.Spec.ManagedBy = nil
	if fp := t.Spec.FailurePolicy; fp != nil && fs.RestartsCountTowardsMaxCarried > 0 {
		fp.MaxRestarts = max(0, fp.MaxRestarts-fs.RestartsCountTowardsMaxCarried)
	}
	return t
}

func withoutFleetKeys(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, "fleet.jobset.x-k8s.io/") || k == "kubectl.kubernetes.io/last-applied-configuration" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// PodSecurityLabels are the pod-security.kubernetes.io/ labels among a
// namespace's labels (nil when none).
func PodSecurityLabels(namespaceLabels map[string]string) map[string]string {
	var out map[string]string
	for k, v := range namespaceLabels {
		if !strings.HasPrefix(k, podSecurityLabelPrefix) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// NewDispatch is the JobSetDispatch for the placement fs of a hub JobSet;
// namespaceLabels are the Pod Security labels of the JobSet's namespace.
func NewDispatch(js *jobset.JobSet, fs jobset.FleetStatus, namespaceLabels map[string]string) *fleet.JobSetDispatch {
	return &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:  fleet.MemberNamespace(fs.Cluster),
			Name:       fleet.DispatchName(js.Namespace, js.Name),
			Labels:     map[string]string{fleet.OriginUIDLabel: string(js.UID)},
			Finalizers: []string{DispatchFinalizer},
		},
		Spec: fleet.JobSetDispatchSpec{
			Origin: fleet.Origin{Namespace: js.Namespace, Name: js.Name, UID: js.UID},
			Epoch:  fs.Epoch,
			JobSet: Template(js, fs),
			// The agent gives a namespace it creates these labels, so the
			// copy's Pods get no more on the member than on the hub.
			NamespaceLabels: namespaceLabels,
		},
	}
}

// memberOf is the member whose namespace holds a dispatch.
func memberOf(d *fleet.JobSetDispatch) string {
	name, _ := fleet.MemberOfNamespace(d.Namespace)
	return name
}

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
	out.ReplicatedJobsStatus = ms.ReplicatedJobsStatus
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
	out.Conditions = conds
	return out
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

// failedByHub marks a status Failed because its member was lost.
func failedByHub(s *jobset.JobSetStatus, msg string) {
	s.TerminalState = string(jobset.JobSetFailed)
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: string(jobset.JobSetFailed), Status: metav1.ConditionTrue, Reason: ReasonMemberLost, Message: fleet.Bounded(msg, fleet.MaxConditionMessage),
	})
}
