package v1alpha1

import jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"

// What the hub writes on a user's JobSet, and the values users give it:
// tools reading a fleet JobSet (kubectl fleet, dashboards) use these too.

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
	// the reason (NoFit, Queued, StartTimeout, MemberLost, InvalidPlacement)
	// while it is pending.
	ConditionDispatched = "Dispatched"
	// ConditionMemberStatusStale is True when the status shown may be out of
	// date because the member's heartbeat is not fresh, and says what the
	// JobSet waits for when its member is lost (AwaitingFence).
	ConditionMemberStatusStale = "MemberStatusStale"
)

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
	// ReasonQueued: the JobSet waits for its turn in the fleet queue (a
	// StrictFIFO head that does not fit is ahead of it, or what it would
	// take is held for a higher-priority JobSet); NoFit: it is its turn but
	// no member fits.
	ReasonQueued = "Queued"
	// ReasonStartTimeout: no Pod of the placement started within the start
	// deadline; the placement is withdrawn (its copy deleted and confirmed
	// gone) and the JobSet placed again elsewhere.
	ReasonStartTimeout = "StartTimeout"
	// ReasonMemberDraining: the JobSet's member is being drained and no
	// Pod of the placement started; it is withdrawn (as for StartTimeout)
	// and placed elsewhere. Not a restart.
	ReasonMemberDraining = "MemberDraining"
	// ReasonAwaitingAdmission: Dispatched=False while a Kueue queue holds the
	// JobSet suspended.
	ReasonAwaitingAdmission = "AwaitingAdmission"
)

// OnMemberLost is the JobSet's member-loss policy.
func OnMemberLost(js *jobset.JobSet) string {
	switch v := js.Annotations[OnMemberLostAnnotation]; v {
	case OnMemberLostAtLeastOnce, OnMemberLostFail, OnMemberLostWait:
		return v
	}
	return OnMemberLostRedispatch
}
