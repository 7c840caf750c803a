package dispatch

import (
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// Observed is everything one reconcile of a hub JobSet reads.
type Observed struct {
	// JobSet is nil when it no longer exists.
	JobSet *jobset.JobSet
	// Dispatches are the JobSet's (its UID), on any member.
	Dispatches []fleet.JobSetDispatch
	// Orphans are dispatches made for an earlier JobSet of the same
	// namespace and name, deleted without the hub (its finalizer removed by
	// hand): they are collected, never adopted.
	Orphans []fleet.JobSetDispatch
	// Members by name.
	Members map[string]inventory.Member
	// Copies is what the hub saw itself, through its access to a member, of
	// the JobSet's copy there. Only members whose agent is silent and that
	// the hub can reach are looked at.
	Copies map[string]fence.Copy
	// CopyErrors says why the hub could not look at a member it has access to.
	CopyErrors map[string]string
	Now        time.Time
	// LostTimeout is the hub's member-lost timeout.
	LostTimeout time.Duration
	// InventoryNamespace holds the ClusterProfiles (for the commands the
	// hub tells operators to run).
	InventoryNamespace string
	// NamespaceLabels are the Pod Security labels of the JobSet's hub
	// namespace, which its dispatches carry.
	NamespaceLabels map[string]string
	// StartTimeout is the hub's start deadline (--start-timeout; the
	// JobSet's annotation overrides it); zero: none.
	StartTimeout time.Duration
	// Strategy is the fleet queue's, for messages.
	Strategy QueueingStrategy
	// KueueOnHub: the hub serves Kueue's API, so a suspended JobSet that
	// names a queue waits for Kueue's admission (heldByQueue).
	KueueOnHub bool
}

// Chooser runs placement for the JobSet with some members excluded (the
// value says why). The reconciler's chooser counts the hub's commitments
// and the fleet queue; it is called with the placement lock held.
type Chooser func(excluded map[string]string) (Choice, error)

// Choice is a Chooser's answer: placement's result, and where the JobSet
// stands in the fleet queue (nil: no queue was consulted).
type Choice struct {
	placement.Result
	Queue *Turn
}

// Event is one event on the hub JobSet.
type Event struct {
	Type, Reason, Message string
}

// Plan is what one reconcile does, in this order: release and delete
// dispatches that are no longer wanted, record a new placement in status
// (before its dispatch exists, so a crash never places twice), create or
// update the current dispatch, stop a copy through the hub's own access,
// publish the placement decision, write the status, emit the events.
type Plan struct {
	AddFinalizer    bool
	RemoveFinalizer bool

	// Delete are dispatches to delete; Release those whose copy is known to
	// be stopped, whose hub finalizer goes (after a live check).
	Delete  []*fleet.JobSetDispatch
	Release []*fleet.JobSetDispatch

	// Record is the status to write before Create: the new placement, and
	// the rest of the new status with it.
	Record *jobset.JobSetStatus
	Create *fleet.JobSetDispatch
	// Update is the current dispatch with the JobSet's spec propagated.
	Update *fleet.JobSetDispatch
	// Reserve is what the new placement commits on its member.
	Reserve corev1.ResourceList

	// StopCopies are members on which the hub stops the JobSet's copy
	// through its own access.
	StopCopies []string

	// Decision is the placement result to publish, when placement ran.
	Decision *placement.Result

	// Status is the JobSet's new status, nil when unchanged.
	Status *jobset.JobSetStatus
	Events []Event

	// DeleteJobSet: ttlSecondsAfterFinished has passed.
	DeleteJobSet bool
	RequeueAfter time.Duration
}

// pollWhileStopping is how often the hub looks again at a copy it is
// stopping through its own access (nothing else tells it of progress).
const pollWhileStopping = 5 * time.Second

// defaultTokenLifetime is the default lifetime of an agent's hub token
// (join's --token-expiration). Only a running agent renews it, so an agent
// offline for longer cannot come back without a new join.
const defaultTokenLifetime = 24 * time.Hour

// maxQuotedError bounds an API error quoted in a condition.
const maxQuotedError = fleet.MaxEventNote

// ComputePlan decides what to do for one hub JobSet. It is pure; choose is
// called only when the JobSet needs a member.
func ComputePlan(o Observed, choose Chooser) (Plan, error) {
	pl := &planner{o: o}
	pl.orphans()
	if o.JobSet == nil {
		return pl.p, nil
	}
	if o.JobSet.DeletionTimestamp != nil {
		pl.finalize()
		return pl.p, nil
	}
	pl.p.AddFinalizer = !controllerutil.ContainsFinalizer(o.JobSet, fleet.JobSetFinalizer)
	err := pl.sync(choose)
	if pl.p.Create != nil && pl.p.Status != nil {
		// One status write per placement, not two: the record written
		// before the dispatch exists is the whole new status, Dispatched
		// condition included (a create that fails turns it into
		// Dispatched=False DispatchFailed, and is retried with this epoch).
		pl.p.Record, pl.p.Status = pl.p.Status, nil
	}
	return pl.p, err
}

type planner struct {
	o      Observed
	p      Plan
	status *jobset.JobSetStatus
	// waiting is set once this reconcile said, in MemberStatusStale, what
	// the JobSet waits for.
	waiting bool
}

func (pl *planner) member(name string) (inventory.Member, bool) {
	m, ok := pl.o.Members[name]
	return m, ok
}

// lost reports whether a member is gone from the fleet or silent for longer
// than the member-lost timeout.
func (pl *planner) lost(name string) bool {
	m, known := pl.member(name)
	return !known || m.Lost(pl.o.LostTimeout)
}

// stopped says whether nothing of d can run on its member any more, and how
// the hub knows. Time alone is never proof: a silent member may still run
// pods. Only with proof may the JobSet run elsewhere.
func (pl *planner) stopped(d *fleet.JobSetDispatch) (bool, string) {
	name := memberOf(d)
	m, known := pl.member(name)
	if c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchDeleted); c != nil && c.Status == metav1.ConditionTrue {
		switch c.Reason {
		case fleet.ReasonUnjoined:
			return true, fmt.Sprintf("member %s was unjoined after its copies were deleted", name)
		case fleet.ReasonStopConfirmed:
			how := fmt.Sprintf("an operator confirmed that the copy on member %s is stopped", name)
			if c.Message != "" {
				how += " (" + fleet.Bounded(c.Message, fleet.MaxMemberReason) + ")"
			}
			return true, how
		}
		return true, fmt.Sprintf("the agent of member %s deleted its copy", name)
	}
	switch {
	case d.DeletionTimestamp != nil && !controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer):
		// The agent adds its finalizer before it creates a copy, and no
		// finalizer can be added to an object being deleted.
		return true, fmt.Sprintf("the agent of member %s never started a copy", name)
	case rejected(d):
		return true, fmt.Sprintf("member %s refused it", name)
	case known && m.OutOfService && !m.HeartbeatFresh:
		return true, fmt.Sprintf("member %s is marked out of service", name)
	}
	if c, ok := pl.o.Copies[name]; ok && !c.Exists {
		return true, fmt.Sprintf("the hub saw through its access to member %s that no copy exists", name)
	}
	if pl.o.JobSet != nil && pl.lost(name) && fleet.OnMemberLost(pl.o.JobSet) == fleet.OnMemberLostAtLeastOnce {
		return true, fmt.Sprintf("member %s is lost and the JobSet opted into at-least-once failover", name)
	}
	return false, ""
}

// orphans collects dispatches of an earlier JobSet of the same name.
func (pl *planner) orphans() {
	for i := range pl.o.Orphans {
		pl.retire(&pl.o.Orphans[i])
	}
}

// retire deletes d and releases it once its copy is known to be stopped.
// It reports whether d is released (or already gone from the hub's view).
func (pl *planner) retire(d *fleet.JobSetDispatch) bool {
	if d.DeletionTimestamp == nil {
		pl.p.Delete = append(pl.p.Delete, d)
	}
	if !controllerutil.ContainsFinalizer(d, fleet.DispatchFinalizer) {
		return true
	}
	if ok, _ := pl.stopped(d); ok {
		pl.p.Release = append(pl.p.Release, d)
		return true
	}
	pl.stopThroughAccess(memberOf(d))
	return false
}

// stopThroughAccess asks the hub to stop the copy on a silent member it can
// reach itself.
func (pl *planner) stopThroughAccess(member string) {
	c, ok := pl.o.Copies[member]
	if !ok || !c.Exists || !pl.lost(member) {
		return
	}
	for _, m := range pl.p.StopCopies {
		if m == member {
			return
		}
	}
	pl.p.StopCopies = append(pl.p.StopCopies, member)
	pl.requeue(pollWhileStopping)
}

func (pl *planner) requeue(after time.Duration) {
	if after > 0 && (pl.p.RequeueAfter == 0 || after < pl.p.RequeueAfter) {
		pl.p.RequeueAfter = after
	}
}

// finalize removes every copy, then lets the JobSet go.
func (pl *planner) finalize() {
	if !controllerutil.ContainsFinalizer(pl.o.JobSet, fleet.JobSetFinalizer) {
		return
	}
	all := true
	for i := range pl.o.Dispatches {
		all = pl.retire(&pl.o.Dispatches[i]) && all
	}
	pl.p.RemoveFinalizer = all
	if !all {
		status := pl.o.JobSet.Status.DeepCopy()
		pl.status = status
		pl.awaitingFence(pl.unreleasedBlocker(), "deleting the JobSet")
		pl.finishStatus()
	}
}

// unreleasedBlocker is a dispatch whose copy may still run: one of this
// JobSet, or of an earlier JobSet of the same name (whose finalizer was
// removed by hand) — a JobSet of the same name usually means the same
// work, so a new one does not start while the old one may run.
func (pl *planner) unreleasedBlocker() *fleet.JobSetDispatch {
	for _, ds := range [][]fleet.JobSetDispatch{pl.o.Dispatches, pl.o.Orphans} {
		for i := range ds {
			d := &ds[i]
			if !controllerutil.ContainsFinalizer(d, fleet.DispatchFinalizer) {
				continue
			}
			if ok, _ := pl.stopped(d); !ok {
				return d
			}
		}
	}
	return nil
}

// sync moves a live JobSet towards running on exactly one member.
func (pl *planner) sync(choose Chooser) error {
	js := pl.o.JobSet
	pl.status = js.Status.DeepCopy()
	fs := fleetOf(pl.status)

	if fs.Cluster == "" && fs.Epoch == 0 {
		if d := newestLive(pl.o.Dispatches); d != nil {
			// Dispatched before the hub kept its bookkeeping in status (or the
			// status was lost): adopt it rather than place again.
			fs.Cluster, fs.Epoch = memberOf(d), d.Spec.Epoch
			pl.setFleet(fs)
			pl.event(corev1.EventTypeNormal, fleet.ReasonAdopted, "adopted JobSetDispatch %s/%s (epoch %d)", d.Namespace, d.Name, d.Spec.Epoch)
		}
	}
	// The recorded placement's dispatch, live or being deleted.
	rec := recordedDispatch(pl.o.Dispatches, fs)
	if rec != nil {
		pl.mirror(rec, fs)
	}

	m, known := pl.member(fs.Cluster)
	lost := fs.Cluster != "" && pl.lost(fs.Cluster)
	switch {
	case IsFinished(pl.status):
		// Nothing runs again; a lost member's copy is stopped below.
	case fs.Cluster == "" || rec == nil:
		// Not placed yet; or the recorded placement has no dispatch: its
		// create failed (retried as is), the hub stopped between recording
		// and creating it, or the dispatch was deleted and its copy
		// confirmed deleted. Place (anew, with a new epoch).
		if pl.retryFailedCreate(fs) {
			break
		}
		if err := pl.place(choose, nil, false); err != nil {
			return err
		}
	case rejected(rec):
		why := rejectionMessage(rec)
		pl.event(corev1.EventTypeWarning, fleet.ReasonDispatchRefused, "member %s refused the JobSet (epoch %d): %s; placing it elsewhere", fs.Cluster, fs.Epoch, why)
		if err := pl.place(choose, map[string]string{fs.Cluster: "refused the JobSet: " + why}, false); err != nil {
			return err
		}
	case lost || (known && m.OutOfService):
		if err := pl.memberGone(choose, rec, fs); err != nil {
			return err
		}
	case rec.DeletionTimestamp != nil:
		// Deleted by someone else while its member is well: run it anew
		// once the member's agent confirms the copy is gone.
		if ok, _ := pl.stopped(rec); ok {
			if err := pl.place(choose, nil, false); err != nil {
				return err
			}
		} else if !withdrawing(fs) && !pl.backToQueue(rec, fs) {
			pl.setCondition(fleet.ConditionDispatched, false, fleet.ReasonDispatchDeleted, fmt.Sprintf(
				"its JobSetDispatch %s/%s was deleted; it runs again once member %s confirms its copy stopped", rec.Namespace, rec.Name, fs.Cluster))
		}
	default:
		if pl.backToQueue(rec, fs) {
			break
		}
		pl.propagate(rec, fs)
		pl.startDeadline(rec)
	}

	pl.staleness()
	pl.cleanup()
	pl.ttl()
	pl.finishStatus()
	return nil
}

// retryFailedCreate plans the create of the recorded placement's dispatch
// again, same member and same epoch, when the last create failed (the API
// server said no; Dispatched=False DispatchFailed) and the API server still
// has no dispatch of that epoch. The same object is created again, so a
// create that timed out but succeeded meets AlreadyExists instead of
// becoming a second dispatch; and epochs do not climb while creates fail.
// It places anew (new epoch) once the member is lost, out of service or
// gone, or holds another dispatch of this name.
func (pl *planner) retryFailedCreate(fs jobset.FleetStatus) bool {
	c := meta.FindStatusCondition(pl.status.Conditions, fleet.ConditionDispatched)
	if fs.Cluster == "" || fs.Epoch == 0 || c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonDispatchFailed {
		return false
	}
	if m, known := pl.member(fs.Cluster); !known || m.OutOfService || pl.lost(fs.Cluster) {
		return false
	}
	ns := fleet.MemberNamespace(fs.Cluster)
	for _, ds := range [][]fleet.JobSetDispatch{pl.o.Dispatches, pl.o.Orphans} {
		for i := range ds {
			if ds[i].Namespace == ns {
				return false
			}
		}
	}
	if blocker := pl.unreleasedBlocker(); blocker != nil {
		pl.awaitingFence(blocker, "")
		return true
	}
	pl.p.Create = NewDispatch(pl.o.JobSet, fs, pl.o.NamespaceLabels)
	pl.p.Reserve = placement.Requests(&pl.o.JobSet.Spec)
	return true
}

// CreateFailedStatus is the status of a JobSet whose dispatch d could not be
// created: Dispatched=False, DispatchFailed, with the (bounded) error. The
// placement, epoch included, stays recorded: the create is retried as is.
func CreateFailedStatus(s jobset.JobSetStatus, d *fleet.JobSetDispatch, err error, now time.Time) jobset.JobSetStatus {
	out := *s.DeepCopy()
	msg := fmt.Sprintf("the hub could not create JobSetDispatch %s/%s (epoch %d) for member %s, and retries it: %s",
		d.Namespace, d.Name, d.Spec.Epoch, memberOf(d), fleet.Bounded(err.Error(), maxQuotedError))
	meta.SetStatusCondition(&out.Conditions, metav1.Condition{
		Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse, Reason: fleet.ReasonDispatchFailed,
		Message: fleet.Bounded(msg, fleet.MaxConditionMessage), LastTransitionTime: metav1.NewTime(now),
	})
	return out
}

// memberGone handles a JobSet whose member is lost or out of service;
// current is its dispatch there (possibly being deleted).
func (pl *planner) memberGone(choose Chooser, current *fleet.JobSetDispatch, fs jobset.FleetStatus) error {
	name := fs.Cluster
	m, known := pl.member(name)
	lost := pl.lost(name)
	why := fmt.Sprintf("member %s is lost: no heartbeat for more than %s", name, pl.o.LostTimeout)
	switch {
	case !known:
		why = fmt.Sprintf("member %s left the fleet", name)
	case m.OutOfService:
		why = fmt.Sprintf("member %s is marked out of service", name)
	}
	policy := fleet.OnMemberLost(pl.o.JobSet)
	switch {
	case lost && policy == fleet.OnMemberLostFail:
		failedByHub(pl.status, why)
		pl.event(corev1.EventTypeWarning, fleet.ReasonMemberLost, "%s; failing the JobSet as its on-member-lost policy asks", why)
		return nil
	case lost && policy == fleet.OnMemberLostWait && !m.OutOfService:
		pl.setCondition(fleet.ConditionMemberStatusStale, true, fleet.ReasonMemberLost,
			fmt.Sprintf("%s; waiting for it to return, as the JobSet's on-member-lost policy asks. %s", why, tokenNote(name, m)))
		pl.waiting = true
		return nil
	}
	if ok, how := pl.stopped(current); ok {
		if how != why {
			why += "; " + how
		}
		return pl.move(choose, current, fs, why)
	}
	if !lost {
		// Out of service but its agent is alive: it stops the copy once the
		// dispatch is deleted, and says so.
		pl.retire(current)
	}
	pl.stopThroughAccess(name)
	pl.awaitingFence(current, why)
	return nil
}

// move places the JobSet elsewhere after its copy on the old member was
// confirmed stopped. The move counts as a restart, against maxRestarts.
func (pl *planner) move(choose Chooser, old *fleet.JobSetDispatch, fs jobset.FleetStatus, why string) error {
	fs.RestartsCarried = pl.status.Restarts + 1
	fs.RestartsCountTowardsMaxCarried = pl.status.RestartsCountTowardsMax + 1
	if limit := maxRestarts(pl.o.JobSet); fs.RestartsCountTowardsMaxCarried > limit {
		failedByHub(pl.status, fmt.Sprintf("%s; moving it to another member would be restart %d, more than failurePolicy.maxRestarts (%d)",
			why, fs.RestartsCountTowardsMaxCarried, limit))
		return nil
	}
	pl.status.Restarts, pl.status.RestartsCountTowardsMax = fs.RestartsCarried, fs.RestartsCountTowardsMaxCarried
	pl.setFleet(fs)
	return pl.place(choose, map[string]string{fs.Cluster: why}, true)
}

// place chooses a member and plans the JobSet's dispatch there. Members
// still holding an unreleased dispatch of the JobSet are excluded (its
// dispatch there has the same name), and nothing is created while any copy
// elsewhere may still run.
func (pl *planner) place(choose Chooser, excluded map[string]string, moving bool) error {
	fs := fleetOf(pl.status)
	excluded = maps.Clone(excluded)
	if excluded == nil {
		excluded = map[string]string{}
	}
	// A new placement makes every existing dispatch old, and a member still
	// holding one (or one of an earlier JobSet of the same name) cannot
	// take a new one of the same name yet.
	for _, ds := range [][]fleet.JobSetDispatch{pl.o.Dispatches, pl.o.Orphans} {
		for i := range ds {
			if _, ok := excluded[memberOf(&ds[i])]; !ok {
				excluded[memberOf(&ds[i])] = fmt.Sprintf("a copy of epoch %d of a JobSet of this name is still being removed", ds[i].Spec.Epoch)
			}
		}
	}
	for name, why := range withdrawnExclusions(fs, pl.o.Members) {
		if _, ok := excluded[name]; !ok {
			excluded[name] = why
		}
	}
	for name, why := range flavorExclusions(pl.o.JobSet, pl.o.Members) {
		if _, ok := excluded[name]; !ok {
			excluded[name] = why
		}
	}
	if blocker := pl.unreleasedBlocker(); blocker != nil {
		pl.awaitingFence(blocker, "")
		return nil
	}
	if queue, held := heldByQueue(pl.o.JobSet, pl.o.KueueOnHub); held {
		// Placed once admitted, against the capacity of that moment and
		// with what admission injected.
		fs.Cluster = ""
		pl.setFleet(fs)
		unplacedStatus(pl.status)
		pl.wait(fleet.ReasonAwaitingAdmission, awaitingAdmissionMessage(queue))
		return nil
	}
	choice, err := choose(excluded)
	if err != nil {
		// Only a malformed annotation gets here (admission rejects those).
		pl.setCondition(fleet.ConditionDispatched, false, fleet.ReasonInvalidPlacement, err.Error())
		return nil
	}
	res := choice.Result
	if res.Cluster == "" {
		reason, msg := fleet.ReasonNoFit, "no member cluster fits: "+res.Explain()
		if q := choice.Queue; q != nil {
			reason, msg = queuedMessage(*q, pl.o.Strategy)
		}
		if moving {
			reason, msg = fleet.ReasonMemberLost, "no other member cluster fits: "+msg
		}
		fs.Cluster = ""
		pl.setFleet(fs)
		if pl.wait(reason, msg) && (choice.Queue == nil || choice.Queue.Behind == "") {
			pl.p.Decision = &res
		}
		return nil
	}
	pl.p.Decision = &res
	fs.Cluster = res.Cluster
	fs.Epoch = nextEpoch(fs.Epoch, pl.o.Dispatches)
	fs.StartDeadlineSince = ptr.To(metav1.NewTime(pl.o.Now))
	pl.setFleet(fs)
	pl.p.Record = pl.status.DeepCopy()
	pl.p.Create = NewDispatch(pl.o.JobSet, fs, pl.o.NamespaceLabels)
	pl.p.Reserve = res.Requests
	reason := fleet.ReasonDispatched
	if moving {
		reason = fleet.ReasonRedispatched
		if len(pl.o.JobSet.Spec.VolumeClaimPolicies) > 0 {
			pl.event(corev1.EventTypeWarning, fleet.ReasonVolumesNotMoved,
				"the volumeClaimPolicies claims are created anew on member %s: what the copy wrote to its claims elsewhere does not move with it", fs.Cluster)
		}
	}
	pl.setCondition(fleet.ConditionDispatched, true, reason, dispatchedMessage(fs))
	return nil
}

// wait sets Dispatched=False for a JobSet that cannot be placed now,
// unless the condition already says the same thing but for live numbers
// (waitSignature): a waiting JobSet is rewritten only when why it waits
// changes. It reports whether it set the condition.
func (pl *planner) wait(reason, msg string) bool {
	msg = fleet.Bounded(msg, fleet.MaxConditionMessage)
	if waitUnchanged(meta.FindStatusCondition(pl.status.Conditions, fleet.ConditionDispatched), reason, msg) {
		return false
	}
	pl.setCondition(fleet.ConditionDispatched, false, reason, msg)
	return true
}

// startDeadline withdraws the current placement d when none of its Pods
// started within the JobSet's start deadline: the dispatch is deleted, the
// JobSet is placed again once the member's agent confirmed its copy gone
// (the same path as a deleted dispatch: never two copies), and that member
// is no candidate until its reported capacity changes. A placement that
// started is never withdrawn, nor one the hub cannot judge: suspended, or
// on a member whose heartbeat is not fresh or that has not reported for
// this epoch. A withdrawal is not a restart.
func (pl *planner) startDeadline(d *fleet.JobSetDispatch) {
	fs := fleetOf(pl.status)
	if fs.StartedEpoch == fs.Epoch || IsFinished(pl.status) {
		return
	}
	if started(d) {
		fs.StartedEpoch = fs.Epoch
		pl.setFleet(fs)
		return
	}
	timeout := StartTimeout(pl.o.JobSet, pl.o.StartTimeout)
	m, known := pl.member(fs.Cluster)
	if suspended(pl.o.JobSet) || !known || !m.HeartbeatFresh || !reported(d) || d.DeletionTimestamp != nil {
		return
	}
	if m.Draining {
		// An operator drains the member: what has not started leaves now,
		// whatever the deadline.
		pl.withdraw(d, fs, "")
		pl.setCondition(fleet.ConditionDispatched, false, fleet.ReasonMemberDraining, fmt.Sprintf(
			"member %s is being drained and no Pod of epoch %d started there: withdrawing it. Its JobSetDispatch is deleted; "+
				"once the member's agent confirms the copy is gone the JobSet is placed again elsewhere. This is not a restart",
			fs.Cluster, fs.Epoch))
		return
	}
	if timeout <= 0 {
		return
	}
	if fs.StartDeadlineSince == nil {
		// Placed before the hub kept this: the deadline starts now.
		fs.StartDeadlineSince = ptr.To(metav1.NewTime(pl.o.Now))
		pl.setFleet(fs)
	}
	if wait := fs.StartDeadlineSince.Add(timeout).Sub(pl.o.Now); wait > 0 {
		pl.requeue(wait + requeueMargin)
		return
	}
	fs = pl.withdraw(d, fs, capacityFingerprint(m))
	msg := fmt.Sprintf("no Pod of epoch %d started on member %s within the start deadline (%s): withdrawing it. Its JobSetDispatch is deleted; "+
		"once the member's agent confirms the copy is gone the JobSet is placed again, without member %s until that member's reported capacity changes. "+
		"This is not a restart. Withdrawn so far from: %s",
		fs.Epoch, fs.Cluster, shortDuration(timeout), fs.Cluster, withdrawnFrom(fs))
	pl.setCondition(fleet.ConditionDispatched, false, fleet.ReasonStartTimeout, msg)
}

// withdraw records a withdrawal of d's placement and retires d: the JobSet
// is placed again once its copy is confirmed gone. capacity is the
// member's fingerprint that keeps it away until it changes ("" for none).
func (pl *planner) withdraw(d *fleet.JobSetDispatch, fs jobset.FleetStatus, capacity string) jobset.FleetStatus {
	fs.Withdrawals = append(append([]jobset.Withdrawal{}, fs.Withdrawals...), jobset.Withdrawal{
		Cluster: fs.Cluster, Epoch: fs.Epoch, Capacity: capacity, Time: metav1.NewTime(pl.o.Now),
	})
	if n := len(fs.Withdrawals); n > maxWithdrawals {
		fs.Withdrawals = fs.Withdrawals[n-maxWithdrawals:]
	}
	pl.setFleet(fs)
	pl.retire(d)
	return fs
}

// awaitingFence says, on the JobSet, that it cannot run elsewhere until the
// copy of d is confirmed stopped, and what confirms it.
func (pl *planner) awaitingFence(d *fleet.JobSetDispatch, why string) {
	if d == nil {
		return
	}
	name := memberOf(d)
	if why == "" {
		why = fmt.Sprintf("its earlier copy on member %s may still run", name)
	}
	msg := why + ". Its copy there may still be running, so the JobSet is not started elsewhere until that copy is confirmed stopped: "
	m, known := pl.member(name)
	if !known {
		// No ClusterProfile to label any more (unjoined keeping its
		// workloads): the operator's word goes on the dispatches.
		msg += fmt.Sprintf("member %s has left the fleet; once nothing of the fleet runs there, run "+
			"`jobset-fleet-agent unjoin --cluster-name %s --confirm-copies-stopped`", name, name)
	} else {
		msg += fmt.Sprintf("bring the member's agent back, or make sure nothing of the fleet runs on %s and run "+
			"`kubectl label clusterprofile -n %s %s %s=true`", name, pl.o.InventoryNamespace, name, fleet.OutOfServiceLabel)
		if pl.lost(name) {
			msg += ". " + tokenNote(name, m)
		}
	}
	if err, ok := pl.o.CopyErrors[name]; ok {
		msg += fmt.Sprintf(". The hub could not reach the member itself: %s", fleet.Bounded(err, fleet.MaxMemberReason))
	} else if _, ok := pl.o.Copies[name]; ok {
		msg += ". The hub is stopping the copy through its own access to the member"
	}
	pl.setCondition(fleet.ConditionMemberStatusStale, true, fleet.ReasonAwaitingFence, msg)
	pl.waiting = true
}

// tokenNote tells how an agent that was offline for longer than its hub
// token lives comes back: it cannot renew the token itself.
func tokenNote(name string, m inventory.Member) string {
	note := fmt.Sprintf("An agent offline for longer than its hub token lives (join's --token-expiration, %s by default) cannot authenticate to the hub any more "+
		"and must be joined again: `jobset-fleet-agent join --cluster-name %s ...`", shortDuration(defaultTokenLifetime), name)
	if m.SilentFor > defaultTokenLifetime {
		note += fmt.Sprintf("; member %s has been silent for %s", name, shortDuration(m.SilentFor))
	}
	return note
}

// shortDuration prints d to the minute without zero units: 24h, 26h30m.
func shortDuration(d time.Duration) string {
	s := d.Truncate(time.Minute).String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// mirror copies the member's report into the JobSet's status.
func (pl *planner) mirror(d *fleet.JobSetDispatch, fs jobset.FleetStatus) {
	before := IsFinished(pl.status)
	*pl.status = mirrorStatus(*pl.status, d, fs)
	if c, ok := pl.o.Copies[memberOf(d)]; ok && c.Exists && c.Epoch == d.Spec.Epoch && c.Status.TerminalState != "" && !IsFinished(pl.status) {
		// The agent is silent, but the hub read the result itself.
		report := d.DeepCopy()
		report.Status.ObservedEpoch = d.Spec.Epoch
		report.Status.JobSetStatus = c.Status
		*pl.status = mirrorStatus(*pl.status, report, fs)
	}
	if !before && IsFinished(pl.status) {
		pl.event(corev1.EventTypeNormal, pl.status.TerminalState, "JobSet %s on member %s", pl.status.TerminalState, memberOf(d))
	}
}

// propagate keeps the current dispatch's template equal to the JobSet.
func (pl *planner) propagate(d *fleet.JobSetDispatch, fs jobset.FleetStatus) {
	want := Template(pl.o.JobSet, fs)
	if !equality.Semantic.DeepEqual(d.Spec.JobSet, want) || !maps.Equal(d.Spec.NamespaceLabels, pl.o.NamespaceLabels) {
		updated := d.DeepCopy()
		updated.Spec.JobSet = want
		updated.Spec.NamespaceLabels = pl.o.NamespaceLabels
		pl.p.Update = updated
		switch suspended, was := ptr.Deref(want.Spec.Suspend, false), ptr.Deref(d.Spec.JobSet.Spec.Suspend, false); {
		case suspended && !was:
			pl.event(corev1.EventTypeNormal, fleet.ReasonSuspending, "suspend sent to member %s", fs.Cluster)
		case !suspended && was:
			pl.event(corev1.EventTypeNormal, fleet.ReasonResuming, "resume sent to member %s", fs.Cluster)
			// The start deadline counts from the resume.
			fs.StartDeadlineSince = ptr.To(metav1.NewTime(pl.o.Now))
			pl.setFleet(fs)
		default:
			pl.event(corev1.EventTypeNormal, fleet.ReasonSpecPropagated, "spec change sent to member %s", fs.Cluster)
		}
	}
	pl.markDispatched(fs)
}

// markDispatched sets Dispatched=True for the placement, keeping a
// Redispatched reason that already says so.
func (pl *planner) markDispatched(fs jobset.FleetStatus) {
	msg := dispatchedMessage(fs)
	c := meta.FindStatusCondition(pl.status.Conditions, fleet.ConditionDispatched)
	if c != nil && c.Status == metav1.ConditionTrue && c.Message == msg {
		return
	}
	pl.setCondition(fleet.ConditionDispatched, true, fleet.ReasonDispatched, msg)
}

// staleness says, by the member's heartbeat, whether the status shown is
// current, unless this reconcile already said what the JobSet waits for.
func (pl *planner) staleness() {
	if pl.waiting {
		return
	}
	fs := fleetOf(pl.status)
	if fs.Cluster == "" || !meta.IsStatusConditionTrue(pl.status.Conditions, fleet.ConditionDispatched) {
		meta.RemoveStatusCondition(&pl.status.Conditions, fleet.ConditionMemberStatusStale)
		return
	}
	m, known := pl.member(fs.Cluster)
	switch {
	case !known || m.Lost(pl.o.LostTimeout):
		pl.setCondition(fleet.ConditionMemberStatusStale, true, fleet.ReasonMemberLost,
			fmt.Sprintf("member %s is lost (%s); status may be out of date", fs.Cluster, memberProblem(m, known)))
	case !m.HeartbeatFresh:
		pl.setCondition(fleet.ConditionMemberStatusStale, true, fleet.ReasonHeartbeatStale,
			fmt.Sprintf("member %s: %s; status may be out of date", fs.Cluster, m.Reason))
		pl.requeue(m.LostIn(pl.o.LostTimeout) + requeueMargin)
	default:
		pl.setCondition(fleet.ConditionMemberStatusStale, false, fleet.ReasonHeartbeatFresh,
			fmt.Sprintf("member %s renews its heartbeat", fs.Cluster))
	}
}

// cleanup retires every dispatch but the current one, and the current one
// of a finished JobSet whose member is gone (a returning agent must not run
// it).
func (pl *planner) cleanup() {
	fs := fleetOf(pl.status)
	keep := currentDispatch(pl.o.Dispatches, fs)
	if p := pl.p.Create; p != nil {
		keep = nil // a new placement: every existing dispatch is old
	}
	if keep != nil && IsFinished(pl.status) && pl.lost(fs.Cluster) {
		keep = nil
	}
	for i := range pl.o.Dispatches {
		d := &pl.o.Dispatches[i]
		if d == keep || containsDispatch(pl.p.Delete, d) || containsDispatch(pl.p.Release, d) {
			continue
		}
		pl.retire(d)
	}
}

// ttl records when the hub first saw the JobSet finished, by its own clock,
// and deletes it once ttlSecondsAfterFinished has passed since then.
func (pl *planner) ttl() {
	if fs := fleetOf(pl.status); IsFinished(pl.status) && fs.FinishedObservedTime == nil {
		fs.FinishedObservedTime = ptr.To(metav1.NewTime(pl.o.Now))
		pl.setFleet(fs)
	}
	expiry, ok := TTLExpiry(pl.o.JobSet, pl.status)
	if !ok {
		return
	}
	if wait := expiry.Sub(pl.o.Now); wait > 0 {
		pl.requeue(wait + requeueMargin)
		return
	}
	pl.p.DeleteJobSet = true
}

// finishStatus sets Status when it changed, with an event per hub
// condition that changed status or reason (conditionEvent).
func (pl *planner) finishStatus() {
	old := &pl.o.JobSet.Status
	if equality.Semantic.DeepEqual(*old, *pl.status) {
		return
	}
	for _, t := range []string{fleet.ConditionDispatched, fleet.ConditionMemberStatusStale} {
		before, after := meta.FindStatusCondition(old.Conditions, t), meta.FindStatusCondition(pl.status.Conditions, t)
		if e, ok := conditionEvent(before, after); ok {
			pl.p.Events = append(pl.p.Events, e)
		}
	}
	pl.p.Status = pl.status
}

// conditionEvent is the event for a hub condition going from before to
// after: Warning when it turns bad, Normal when it recovers. A condition
// first set to good (Dispatched=True, MemberStatusStale=False) gets none:
// that is every JobSet's happy path, the condition says it, and an event
// would be one more write of the hub apiserver per JobSet. How a JobSet
// got out of trouble (dispatched after waiting, moved) keeps its event.
func conditionEvent(before, after *metav1.Condition) (Event, bool) {
	if after == nil || (before != nil && before.Status == after.Status && before.Reason == after.Reason) {
		return Event{}, false
	}
	good := (after.Type == fleet.ConditionDispatched) == (after.Status == metav1.ConditionTrue)
	if good && before == nil {
		return Event{}, false
	}
	typ := corev1.EventTypeNormal
	if !good {
		typ = corev1.EventTypeWarning
	}
	return Event{Type: typ, Reason: after.Reason, Message: fleet.Bounded(after.Message, fleet.MaxEventNote)}, true
}

func (pl *planner) setFleet(fs jobset.FleetStatus) {
	if equality.Semantic.DeepEqual(fs, jobset.FleetStatus{}) {
		pl.status.Fleet = nil
		return
	}
	pl.status.Fleet = &fs
}

func (pl *planner) setCondition(typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&pl.status.Conditions, metav1.Condition{
		Type: typ, Status: st, Reason: reason, Message: fleet.Bounded(msg, fleet.MaxConditionMessage), LastTransitionTime: metav1.NewTime(pl.o.Now),
	})
}

func (pl *planner) event(typ, reason, format string, args ...any) {
	pl.p.Events = append(pl.p.Events, Event{Type: typ, Reason: reason, Message: fleet.Bounded(fmt.Sprintf(format, args...), fleet.MaxEventNote)})
}

func containsDispatch(list []*fleet.JobSetDispatch, d *fleet.JobSetDispatch) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

func dispatchedMessage(fs jobset.FleetStatus) string {
	msg := fmt.Sprintf("dispatched to member %s (epoch %d)", fs.Cluster, fs.Epoch)
	if len(fs.Withdrawals) > 0 {
		msg += "; withdrawn earlier, as no Pod started within the start deadline, from: " + withdrawnFrom(fs)
	}
	return msg
}

func memberProblem(m inventory.Member, known bool) string {
	if !known {
		return "not in the fleet"
	}
	return m.Reason
}

// nextEpoch is one more than any epoch recorded or seen on a dispatch.
func nextEpoch(recorded int64, dispatches []fleet.JobSetDispatch) int64 {
	e := recorded
	for i := range dispatches {
		e = max(e, dispatches[i].Spec.Epoch)
	}
	return e + 1
}

// recordedDispatch is the dispatch of the recorded placement, live or being
// deleted.
func recordedDispatch(dispatches []fleet.JobSetDispatch, fs jobset.FleetStatus) *fleet.JobSetDispatch {
	if fs.Cluster == "" {
		return nil
	}
	for i := range dispatches {
		d := &dispatches[i]
		if d.Namespace == fleet.MemberNamespace(fs.Cluster) && d.Spec.Epoch == fs.Epoch {
			return d
		}
	}
	return nil
}

// currentDispatch is the live dispatch of the recorded placement.
func currentDispatch(dispatches []fleet.JobSetDispatch, fs jobset.FleetStatus) *fleet.JobSetDispatch {
	if d := recordedDispatch(dispatches, fs); d != nil && d.DeletionTimestamp == nil {
		return d
	}
	return nil
}

func newestLive(dispatches []fleet.JobSetDispatch) *fleet.JobSetDispatch {
	var newest *fleet.JobSetDispatch
	for i := range dispatches {
		d := &dispatches[i]
		if d.DeletionTimestamp == nil && (newest == nil || d.Spec.Epoch > newest.Spec.Epoch) {
			newest = d
		}
	}
	return newest
}

// maxRestarts is the JobSet's restart budget (no failurePolicy: none).
func maxRestarts(js *jobset.JobSet) int32 {
	if fp := js.Spec.FailurePolicy; fp != nil {
		return fp.MaxRestarts
	}
	return 0
}
