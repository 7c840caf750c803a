package agent

import (
	"fmt"
	"maps"
	"strconv"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Reasons of the agent's dispatch conditions.
const (
	ReasonAccepted    = "Accepted"
	ReasonConflict    = "Conflict"
	ReasonNewerEpoch  = "NewerEpochOnMember"
	ReasonCopyDeleted = "MemberJobSetDeleted"
)

// DispatchKey is the value of the dispatch annotation for d.
func DispatchKey(d *fleetv1alpha1.JobSetDispatch) string { return d.Namespace + "/" + d.Name }

// Epoch is the epoch a member JobSet was made for, 0 when unlabelled or
// unparsable (so it counts as older than any dispatch).
func Epoch(js *v1alpha2.JobSet) int64 {
	e, err := strconv.ParseInt(js.Labels[fleetv1alpha1.EpochLabel], 10, 64)
	if err != nil {
		return 0
	}
	return e
}

// DesiredJobSet is the member JobSet a dispatch asks for: the origin's
// namespace and name, the user's labels, annotations and spec, plus the
// origin UID and epoch labels and the dispatch annotation that tie the copy
// to this dispatch.
func DesiredJobSet(d *fleetv1alpha1.JobSetDispatch) *v1alpha2.JobSet {
	labels := maps.Clone(d.Spec.JobSet.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[fleetv1alpha1.OriginUIDLabel] = string(d.Spec.Origin.UID)
	labels[fleetv1alpha1.EpochLabel] = strconv.FormatInt(d.Spec.Epoch, 10)
	annotations := maps.Clone(d.Spec.JobSet.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[fleetv1alpha1.DispatchAnnotation] = DispatchKey(d)

	js := &v1alpha2.JobSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   d.Spec.Origin.Namespace,
			Name:        d.Spec.Origin.Name,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: *d.Spec.JobSet.Spec.DeepCopy(),
	}
	// On the hub the JobSet is managed by the fleet so the hub's own JobSet
	// controller leaves it alone; on the member the built-in controller must
	// run it.
	if ptr.Deref(js.Spec.ManagedBy, "") == fleetv1alpha1.ManagedByFleet {
		js.Spec.ManagedBy = nil
	}
	// Defaulting here keeps what the agent sends identical to what the member
	// stores, whether or not the member runs the defaulting webhook.
	v1alpha2.Default(js)
	return js
}

// MergeMutable returns current with every field the dispatch may change
// after creation set from desired: labels and annotations the dispatch
// names, spec.suspend and, while the JobSet is or becomes suspended, the pod
// template fields the JobSet API lets change then (what Kueue-style
// admission edits). Everything else in a JobSet spec is immutable. It
// returns nil when nothing changes.
func MergeMutable(current, desired *v1alpha2.JobSet) *v1alpha2.JobSet {
	updated := current.DeepCopy()
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	maps.Copy(updated.Labels, desired.Labels)
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)

	if current.IsSuspended() != desired.IsSuspended() {
		updated.Spec.Suspend = ptr.To(desired.IsSuspended())
	}
	if current.IsSuspended() || desired.IsSuspended() {
		for i := range updated.Spec.ReplicatedJobs {
			rj := &updated.Spec.ReplicatedJobs[i]
			for _, want := range desired.Spec.ReplicatedJobs {
				if want.Name != rj.Name {
					continue
				}
				got, src := &rj.Template.Spec.Template, &want.Template.Spec.Template
				got.Labels = maps.Clone(src.Labels)
				got.Annotations = maps.Clone(src.Annotations)
				got.Spec.NodeSelector = maps.Clone(src.Spec.NodeSelector)
				got.Spec.Tolerations = src.DeepCopy().Spec.Tolerations
				got.Spec.SchedulingGates = src.DeepCopy().Spec.SchedulingGates
			}
		}
	}
	if equality.Semantic.DeepEqual(updated, current) {
		return nil
	}
	return updated
}

// Observed is what Reconcile saw of one dispatch.
type Observed struct {
	// Key is "<hub namespace>/<dispatch name>".
	Key string
	// Dispatch is nil when the dispatch is gone from the hub cache.
	Dispatch *fleetv1alpha1.JobSetDispatch
	// Target is the member JobSet at the origin's namespace/name, if any.
	Target *v1alpha2.JobSet
	// Copies are the member JobSets whose dispatch annotation is Key.
	Copies []v1alpha2.JobSet
	// ClusterName names this member in messages.
	ClusterName string
	Now         metav1.Time
}

// Plan is what Reconcile must do, in this order.
type Plan struct {
	// Delete are member JobSets to remove (stale epoch, other origin, or no
	// dispatch any more).
	Delete []*v1alpha2.JobSet
	// ConfirmDispatchGone: the deletions are orphans found through the cache;
	// they may only happen once a live read confirms the dispatch is gone.
	ConfirmDispatchGone bool
	// ConfirmDispatchCurrent asks for a live read before the plan starts
	// work (creates a running copy or resumes one): right after a reconnect
	// the hub cache can still hold a dispatch the hub has since deleted or
	// moved, and acting on it would run a second copy.
	ConfirmDispatchCurrent bool
	AddFinalizer           bool
	// Create is a member JobSet to create, with its namespace if missing.
	Create *v1alpha2.JobSet
	// Update is the target with the dispatch's mutable fields applied.
	Update *v1alpha2.JobSet
	// Status is the new dispatch status; nil when it did not change.
	Status          *fleetv1alpha1.JobSetDispatchStatus
	RemoveFinalizer bool
	// Waiting is set while a deletion must finish before the next step; the
	// JobSet delete event triggers the next reconcile.
	Waiting string
}

// ComputePlan decides what to do for one dispatch. It is pure.
func ComputePlan(o Observed) Plan {
	var p Plan
	d := o.Dispatch
	if d == nil {
		// No dispatch: every copy made for it is an orphan.
		p.Delete = live(o.Copies, func(*v1alpha2.JobSet) bool { return true })
		p.ConfirmDispatchGone = len(p.Delete) > 0
		return p
	}

	if d.DeletionTimestamp != nil {
		p.Delete = live(o.Copies, func(*v1alpha2.JobSet) bool { return true })
		if len(o.Copies) > 0 {
			p.Waiting = "member JobSet is being deleted"
			return p
		}
		p.Status = nextStatus(d, o.Now, func(st *fleetv1alpha1.JobSetDispatchStatus) {
			setCondition(st, d, fleetv1alpha1.DispatchDeleted, metav1.ConditionTrue, ReasonCopyDeleted,
				fmt.Sprintf("the member JobSet no longer exists on cluster %s", o.ClusterName))
		})
		p.RemoveFinalizer = controllerutil.ContainsFinalizer(d, fleetv1alpha1.AgentFinalizer)
		return p
	}

	stale := func(js *v1alpha2.JobSet) bool {
		return js.Labels[fleetv1alpha1.OriginUIDLabel] != string(d.Spec.Origin.UID) || Epoch(js) < d.Spec.Epoch
	}
	p.Delete = live(o.Copies, stale)

	t := o.Target
	switch {
	case t == nil && finishedHere(d):
		// The copy finished and was then removed (ttlSecondsAfterFinished,
		// or by hand): its result is already reported, and running it again
		// would be a second run of a finished JobSet.
	case t == nil:
		p.AddFinalizer = !controllerutil.ContainsFinalizer(d, fleetv1alpha1.AgentFinalizer)
		p.Create = DesiredJobSet(d)
		p.ConfirmDispatchCurrent = !p.Create.IsSuspended()
		p.Status = nextStatus(d, o.Now, func(st *fleetv1alpha1.JobSetDispatchStatus) {
			accepted(st, d, o.ClusterName)
			st.ObservedEpoch = d.Spec.Epoch
			st.JobSetStatus = v1alpha2.JobSetStatus{}
		})
	case t.Annotations[fleetv1alpha1.DispatchAnnotation] == o.Key && stale(t):
		// The old copy must be gone before the new one takes its name.
		p.Waiting = "stale member JobSet is being deleted"
	case t.Annotations[fleetv1alpha1.DispatchAnnotation] != o.Key || t.Labels[fleetv1alpha1.OriginUIDLabel] != string(d.Spec.Origin.UID):
		// Someone else's JobSet: never take it over.
		p.Status = nextStatus(d, o.Now, func(st *fleetv1alpha1.JobSetDispatchStatus) {
			setCondition(st, d, fleetv1alpha1.DispatchAccepted, metav1.ConditionFalse, ReasonConflict,
				fmt.Sprintf("JobSet %s/%s already exists on cluster %s and was not created for this dispatch", t.Namespace, t.Name, o.ClusterName))
		})
	case Epoch(t) > d.Spec.Epoch:
		p.Status = nextStatus(d, o.Now, func(st *fleetv1alpha1.JobSetDispatchStatus) {
			setCondition(st, d, fleetv1alpha1.DispatchAccepted, metav1.ConditionFalse, ReasonNewerEpoch,
				fmt.Sprintf("cluster %s runs JobSet %s/%s for epoch %d, newer than this dispatch's %d", o.ClusterName, t.Namespace, t.Name, Epoch(t), d.Spec.Epoch))
		})
	default:
		p.AddFinalizer = !controllerutil.ContainsFinalizer(d, fleetv1alpha1.AgentFinalizer)
		p.Update = MergeMutable(t, DesiredJobSet(d))
		p.ConfirmDispatchCurrent = p.Update != nil && t.IsSuspended() && !p.Update.IsSuspended()
		p.Status = nextStatus(d, o.Now, func(st *fleetv1alpha1.JobSetDispatchStatus) {
			accepted(st, d, o.ClusterName)
			st.ObservedEpoch = Epoch(t)
			st.JobSetStatus = *t.Status.DeepCopy()
		})
	}
	return p
}

// finishedHere reports whether the dispatch's status already holds a terminal
// JobSet status for its current epoch.
func finishedHere(d *fleetv1alpha1.JobSetDispatch) bool {
	return d.Status.ObservedEpoch == d.Spec.Epoch && d.Status.JobSetStatus.TerminalState != ""
}

// live returns pointers to the copies that match and are not already being
// deleted.
func live(copies []v1alpha2.JobSet, match func(*v1alpha2.JobSet) bool) []*v1alpha2.JobSet {
	var out []*v1alpha2.JobSet
	for i := range copies {
		if copies[i].DeletionTimestamp == nil && match(&copies[i]) {
			out = append(out, &copies[i])
		}
	}
	return out
}

func accepted(st *fleetv1alpha1.JobSetDispatchStatus, d *fleetv1alpha1.JobSetDispatch, cluster string) {
	setCondition(st, d, fleetv1alpha1.DispatchAccepted, metav1.ConditionTrue, ReasonAccepted,
		fmt.Sprintf("running as JobSet %s/%s on cluster %s", d.Spec.Origin.Namespace, d.Spec.Origin.Name, cluster))
	st.ObservedGeneration = d.Generation
}

func setCondition(st *fleetv1alpha1.JobSetDispatchStatus, d *fleetv1alpha1.JobSetDispatch, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: d.Generation,
	})
}

// nextStatus applies mutate to a copy of d's status and returns it with a
// new lastSyncTime, or nil when nothing but the sync time would change: the
// hub is written only on change.
func nextStatus(d *fleetv1alpha1.JobSetDispatch, now metav1.Time, mutate func(*fleetv1alpha1.JobSetDispatchStatus)) *fleetv1alpha1.JobSetDispatchStatus {
	next := d.Status.DeepCopy()
	mutate(next)
	if !StatusChanged(&d.Status, next) {
		return nil
	}
	next.LastSyncTime = &now
	return next
}

// StatusChanged reports whether two dispatch statuses differ in anything but
// lastSyncTime.
func StatusChanged(old, next *fleetv1alpha1.JobSetDispatchStatus) bool {
	a, b := old.DeepCopy(), next.DeepCopy()
	a.LastSyncTime, b.LastSyncTime = nil, nil
	return !equality.Semantic.DeepEqual(a, b)
}
