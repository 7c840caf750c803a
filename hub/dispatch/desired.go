package dispatch

import (
	"time"

	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Finalizers, annotations and conditions the hub owns.
const (
	// JobSetFinalizer keeps a hub JobSet until its member copy is gone.
	JobSetFinalizer = "fleet.jobset.x-k8s.io/dispatch"
	// DispatchFinalizer keeps a JobSetDispatch until its agent reports the
	// member copy deleted (or the member is lost), so the report has an
	// object to land on.
	DispatchFinalizer = "fleet.jobset.x-k8s.io/member-cleanup"

	// EpochAnnotation on a hub JobSet is the last epoch the hub assigned. It
	// is written before the dispatch is created, so no epoch is ever reused,
	// even across hub restarts.
	EpochAnnotation = "fleet.jobset.x-k8s.io/epoch"
	// RestartsCarriedAnnotation and RestartsTowardsMaxCarriedAnnotation hold
	// the restarts the JobSet made on members it was moved away from.
	RestartsCarriedAnnotation           = "fleet.jobset.x-k8s.io/restarts-carried"
	RestartsTowardsMaxCarriedAnnotation = "fleet.jobset.x-k8s.io/restarts-towards-max-carried"

	// ConditionDispatched is True while a member runs the JobSet; False with
	// the reason (NoFit, MemberLost, MemberRejected) while it is pending.
	ConditionDispatched = "Dispatched"
	// ConditionMemberStatusStale is True when the status shown may be out of
	// date because the member's heartbeat is not fresh.
	ConditionMemberStatusStale = "MemberStatusStale"
)

// OnMemberLost values.
const (
	OnMemberLostRedispatch = "Redispatch"
	OnMemberLostFail       = "Fail"
	OnMemberLostWait       = "Wait"
)

// Reasons of hub conditions and events.
const (
	ReasonDispatched     = "Dispatched"
	ReasonRedispatched   = "Redispatched"
	ReasonNoFit          = "NoFit"
	ReasonMemberLost     = "MemberLost"
	ReasonMemberRejected = "MemberRejected"
	ReasonHeartbeatStale = "HeartbeatStale"
	ReasonHeartbeatFresh = "HeartbeatFresh"
	ReasonSpecPropagated = "SpecPropagated"
	ReasonAdopted        = "Adopted"
	ReasonDeleting       = "DeletingMemberCopy"
	ReasonReleased       = "MemberCopyDeleted"
)

// hubConditionTypes are set by the hub, never copied from the member.
var hubConditionTypes = map[string]bool{ConditionDispatched: true, ConditionMemberStatusStale: true}

// Carried is what earlier members contributed to the JobSet's restarts.
type Carried struct {
	Restarts           int32
	RestartsTowardsMax int32
}

// Placement is the hub's recorded decision for a JobSet: which member, which
// epoch, and the restarts carried over from earlier members.
type Placement struct {
	Cluster string
	Epoch   int64
	Carried Carried
}

// RecordedPlacement reads the decision recorded on a hub JobSet. Malformed
// annotations read as zero: epochs then restart from the dispatches found.
func RecordedPlacement(js *jobset.JobSet) Placement {
	p := Placement{Cluster: js.Labels[fleet.ClusterLabel]}
	p.Epoch, _ = strconv.ParseInt(js.Annotations[EpochAnnotation], 10, 64)
	r, _ := strconv.ParseInt(js.Annotations[RestartsCarriedAnnotation], 10, 32)
	m, _ := strconv.ParseInt(js.Annotations[RestartsTowardsMaxCarriedAnnotation], 10, 32)
	p.Carried = Carried{Restarts: int32(r), RestartsTowardsMax: int32(m)}
	return p
}

// Record writes p onto the JobSet's metadata (the caller patches it).
func (p Placement) Record(js *jobset.JobSet) {
	if js.Labels == nil {
		js.Labels = map[string]string{}
	}
	if js.Annotations == nil {
		js.Annotations = map[string]string{}
	}
	js.Labels[fleet.ClusterLabel] = p.Cluster
	js.Annotations[EpochAnnotation] = strconv.FormatInt(p.Epoch, 10)
	if p.Carried != (Carried{}) {
		js.Annotations[RestartsCarriedAnnotation] = strconv.Itoa(int(p.Carried.Restarts))
		js.Annotations[RestartsTowardsMaxCarriedAnnotation] = strconv.Itoa(int(p.Carried.RestartsTowardsMax))
	}
}

// OnMemberLost is the JobSet's member-loss policy.
func OnMemberLost(js *jobset.JobSet) string {
	switch v := js.Annotations[fleet.OnMemberLostAnnotation]; v {
	case OnMemberLostFail, OnMemberLostWait:
		return v
	}
	return OnMemberLostRedispatch
}

// Template is what the member must run for a hub JobSet: the user's labels,
// annotations and spec, without the hub's own bookkeeping, managed by the
// member's built-in controller, with maxRestarts reduced by the restarts
// already spent on earlier members.
func Template(js *jobset.JobSet, carried Carried) fleet.JobSetTemplate {
	t := fleet.JobSetTemplate{
		Labels:      withoutFleetKeys(js.Labels),
		Annotations: withoutFleetKeys(js.Annotations),
	}
	js.Spec.DeepCopyInto(&t.Spec)
	t.Spec.ManagedBy = nil
	if fp := t.Spec.FailurePolicy; fp != nil && carried.RestartsTowardsMax > 0 {
		fp.MaxRestarts = max(0, fp.MaxRestarts-carried.RestartsTowardsMax)
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

// NewDispatch is the JobSetDispatch for placement p of a hub JobSet.
func NewDispatch(js *jobset.JobSet, p Placement) *fleet.JobSetDispatch {
	return &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:  fleet.MemberNamespace(p.Cluster),
			Name:       fleet.DispatchName(js.Namespace, js.Name),
			Labels:     map[string]string{fleet.OriginUIDLabel: string(js.UID)},
			Finalizers: []string{DispatchFinalizer},
		},
		Spec: fleet.JobSetDispatchSpec{
			Origin: fleet.Origin{Namespace: js.Namespace, Name: js.Name, UID: js.UID},
			Epoch:  p.Epoch,
			JobSet: Template(js, p.Carried),
		},
	}
}

// MemberOf is the member whose namespace holds a dispatch.
func MemberOf(d *fleet.JobSetDispatch) string {
	return strings.TrimPrefix(d.Namespace, fleet.MemberNamespacePrefix)
}

// Reported reports whether the agent wrote status for this dispatch's epoch.
// Agents that do not fill observedEpoch are trusted once they synced: a
// dispatch object only ever carries one epoch.
func Reported(d *fleet.JobSetDispatch) bool {
	return d.Status.ObservedEpoch == d.Spec.Epoch || (d.Status.ObservedEpoch == 0 && d.Status.LastSyncTime != nil)
}

// AgentDeleted reports whether the agent says the member copy is gone.
func AgentDeleted(d *fleet.JobSetDispatch) bool {
	return meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted)
}

// AgentRejected returns the agent's refusal, if it refused the dispatch.
func AgentRejected(d *fleet.JobSetDispatch) (string, bool) {
	c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchAccepted)
	if c == nil || c.Status != metav1.ConditionFalse {
		return "", false
	}
	return fmt.Sprintf("member %s refused the JobSet: %s: %s", MemberOf(d), c.Reason, c.Message), true
}

// MirrorStatus is the user's JobSet status given the member's report: the
// member's status with the carried restarts added, the member's conditions,
// and the hub's own conditions kept. A finished JobSet stays finished, and
// nothing changes until the member reported for this dispatch's epoch.
func MirrorStatus(current jobset.JobSetStatus, d *fleet.JobSetDispatch, carried Carried) jobset.JobSetStatus {
	out := *current.DeepCopy()
	if current.TerminalState != "" {
		return out
	}
	out.Restarts = max(out.Restarts, carried.Restarts)
	out.RestartsCountTowardsMax = max(out.RestartsCountTowardsMax, carried.RestartsTowardsMax)
	if d == nil || !Reported(d) {
		return out
	}
	ms := d.Status.JobSetStatus.DeepCopy()
	out.Restarts = ms.Restarts + carried.Restarts
	out.RestartsCountTowardsMax = ms.RestartsCountTowardsMax + carried.RestartsTowardsMax
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
// be deleted: that many seconds after its Completed or Failed condition
// turned True. ok is false when the JobSet is not finished or has no TTL.
func TTLExpiry(js *jobset.JobSet, status *jobset.JobSetStatus) (expiry time.Time, ok bool) {
	ttl := js.Spec.TTLSecondsAfterFinished
	if ttl == nil || !IsFinished(status) {
		return time.Time{}, false
	}
	c := meta.FindStatusCondition(status.Conditions, status.TerminalState)
	if c == nil || c.Status != metav1.ConditionTrue {
		return time.Time{}, false
	}
	return c.LastTransitionTime.Add(time.Duration(*ttl) * time.Second), true
}

// failedByHub marks a status Failed because its member was lost.
func failedByHub(s *jobset.JobSetStatus, msg string) {
	s.TerminalState = string(jobset.JobSetFailed)
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: string(jobset.JobSetFailed), Status: metav1.ConditionTrue, Reason: ReasonMemberLost, Message: msg,
	})
}
