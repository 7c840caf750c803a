package agent

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// RefusalRetryInterval is how often the agent tries again to create a copy
// the member refused, in case the cause went away (quota raised, policy
// changed) before the hub placed the JobSet elsewhere.
const RefusalRetryInterval = 30 * time.Second

// DesiredJobSet is the member JobSet a dispatch asks for: the origin's
// namespace and name, the user's labels, annotations and spec, plus the
// origin UID and epoch labels and the dispatch annotation that tie the copy
// to this dispatch.
func DesiredJobSet(d *fleet.JobSetDispatch) *jobset.JobSet {
	labels := maps.Clone(d.Spec.JobSet.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[fleet.OriginUIDLabel] = string(d.Spec.Origin.UID)
	labels[fleet.EpochLabel] = strconv.FormatInt(d.Spec.Epoch, 10)
	annotations := maps.Clone(d.Spec.JobSet.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[fleet.DispatchAnnotation] = fleet.DispatchKey(d)

	js := &jobset.JobSet{
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
	if ptr.Deref(js.Spec.ManagedBy, "") == fleet.ManagedByFleet {
		js.Spec.ManagedBy = nil
	}
	for i := range js.Spec.ReplicatedJobs {
		withEpoch(&js.Spec.ReplicatedJobs[i].Template.Spec.Template, d.Spec.Epoch)
	}
	// Defaulting here keeps what the agent sends identical to what the member
	// stores, whether or not the member runs the defaulting webhook.
	jobset.Default(js)
	return js
}

// withEpoch hands the copy's placement epoch to every Pod of tpl: as the
// annotation PodEpochAnnotation and, through the Downward API, as the
// environment variable EpochEnvVar of every container and init container.
// It is a fencing token: storage can reject writes of a lower epoch than it
// has seen, so a stale copy cannot overwrite a newer one's checkpoint. The
// fleet's variable replaces a user's of the same name: a forged epoch would
// defeat the token.
func withEpoch(tpl *corev1.PodTemplateSpec, epoch int64) {
	if tpl.Annotations == nil {
		tpl.Annotations = map[string]string{}
	}
	tpl.Annotations[fleet.PodEpochAnnotation] = strconv.FormatInt(epoch, 10)
	env := corev1.EnvVar{
		Name: fleet.EpochEnvVar,
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			FieldPath: "metadata.annotations['" + fleet.PodEpochAnnotation + "']",
		}},
	}
	for _, containers := range [][]corev1.Container{tpl.Spec.InitContainers, tpl.Spec.Containers} {
		for i := range containers {
			c := &containers[i]
			c.Env = append(slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == env.Name }), env)
		}
	}
}

// MergeMutable returns current with every field the dispatch may change
// after creation set from desired: labels and annotations the dispatch
// names, spec.suspend, the parallelism and completions of its Jobs
// (ElasticJobSet) and, while the JobSet is or becomes suspended, the pod
// template fields the JobSet API lets change then (what Kueue-style
// admission edits). Everything else in a JobSet spec is immutable. It
// returns nil when nothing changes.
func MergeMutable(current, desired *jobset.JobSet) *jobset.JobSet {
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
	for i := range updated.Spec.ReplicatedJobs {
		rj := &updated.Spec.ReplicatedJobs[i]
		for _, want := range desired.Spec.ReplicatedJobs {
			if want.Name != rj.Name {
				continue
			}
			if current.IsSuspended() || desired.IsSuspended() {
				jobset.CopySuspendMutableFields(&rj.Template.Spec.Template, want.Template.Spec.Template.DeepCopy())
			}
			// ElasticJobSet scaling, decided on the hub; the member's own
			// admission (its gate) has the last word.
			rj.Template.Spec.Parallelism = want.Template.Spec.Parallelism
			rj.Template.Spec.Completions = want.Template.Spec.Completions
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
	Dispatch *fleet.JobSetDispatch
	// Target is the member JobSet at the origin's namespace/name, if any.
	Target *jobset.JobSet
	// Copies are the member JobSets whose dispatch annotation is Key.
	Copies []jobset.JobSet
	// Jobs counts, for each copy being deleted, the Jobs it still controls.
	Jobs map[types.UID]int
	// ClusterName names this member in messages.
	ClusterName string
	Now         metav1.Time
	// LastReport is when this agent last wrote the dispatch's status or
	// created its copy; zero if it did neither since it started.
	LastReport time.Time
	// DeniedNamespaces are the agent's --denied-namespaces, added to
	// fleet.BuiltinDeniedNamespaces: no copy is created there.
	DeniedNamespaces []string
	// PodsRan is true once a Pod of Target ran (PodsRan over its Jobs);
	// only looked at while the dispatch does not say Started yet.
	PodsRan bool
	// Kueue is what the member's Kueue does with Target (kueue_copy.go).
	Kueue KueueCopy
}

// ReasonPodsRan is the reason of the Started condition the agent sets.
const ReasonPodsRan = "PodsRan"

// PodsRan reports whether a Pod of any Job the copy owner controls ran:
// one is ready, or has finished. The hub's start deadline never withdraws
// a placement once a Pod of it ran, and a Job only some of whose Pods run
// shows in no JobSet status count, hence this condition.
func PodsRan(jobs []batchv1.Job, owner types.UID) bool {
	for i := range jobs {
		j := &jobs[i]
		if ctrl := metav1.GetControllerOf(j); ctrl == nil || ctrl.UID != owner {
			continue
		}
		if ptr.Deref(j.Status.Ready, 0) > 0 || j.Status.Succeeded > 0 || j.Status.Failed > 0 {
			return true
		}
	}
	return false
}

// ReportInterval is the least time between two status reports of a
// dispatch that only say how a running copy progresses (its Jobs' counts,
// or that it was accepted). They are merged into one write: a copy's first
// seconds change its status several times, and each report is a write on
// the hub and a status write there in turn. What the hub acts on (a
// terminal state, restarts, a condition) is reported at once.
const ReportInterval = time.Second

// States of a dispatch's member copy, as the jobset_fleet_agent_dispatches
// metric reports them.
const (
	StatePending   = "Pending"
	StateRunning   = "Running"
	StateSuspended = "Suspended"
	StateFinished  = "Finished"
	StateRefused   = "Refused"
	StateDeleting  = "Deleting"
)

// DispatchStates lists every state.
var DispatchStates = []string{StatePending, StateRunning, StateSuspended, StateFinished, StateRefused, StateDeleting}

// Plan is what Reconcile must do, in this order.
type Plan struct {
	// Delete are member JobSets to delete in the foreground (stale epoch,
	// other origin, or no dispatch any more), or whose deletion must become
	// foreground so their Jobs go before them.
	Delete []*jobset.JobSet
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
	Create *jobset.JobSet
	// Update is the target with the dispatch's mutable fields applied.
	Update *jobset.JobSet
	// Workloads are changes of the target's Kueue Workloads: how a copy
	// the member's Kueue manages is suspended and resumed.
	Workloads []WorkloadChange
	// Status is the new dispatch status; nil when it did not change.
	Status *fleet.JobSetDispatchStatus
	// Release are copies being deleted whose Jobs are gone and whose last
	// status the hub holds (or no longer needs): ReportFinalizer comes off.
	Release         []*jobset.JobSet
	RemoveFinalizer bool
	// Waiting is set while a deletion must finish before the next step; the
	// JobSet delete event triggers the next reconcile.
	Waiting string
	// State is the copy's state for metrics; empty once nothing is left.
	State string
	// ReportAfter is set when a progress report was held back to be merged
	// with the next: reconcile again then.
	ReportAfter time.Duration
}

// ComputePlan decides what to do for one dispatch. It is pure.
//
// Every copy the agent creates carries ReportFinalizer, and so does every
// copy it adopts. A copy being deleted — by ttlSecondsAfterFinished, by
// hand, by the fencer or by the agent — therefore stays visible until its
// Jobs are gone and the dispatch status holds its last status for its
// epoch: a finished copy is never mistaken for one that never ran, and an
// unfinished one is created again with the restarts it had spent.
func ComputePlan(o Observed) Plan {
	pl := &planner{o: o, d: o.Dispatch}
	switch {
	case pl.d == nil:
		pl.orphaned()
	case pl.d.DeletionTimestamp != nil:
		pl.deleting()
	default:
		pl.retireStale()
		pl.sync()
	}
	return pl.p
}

// planner computes one Plan from what was observed of one dispatch, d.
type planner struct {
	o Observed
	d *fleet.JobSetDispatch
	p Plan
}

// ours reports whether js was made for this dispatch and its origin.
func (pl *planner) ours(js *jobset.JobSet) bool {
	return js.Annotations[fleet.DispatchAnnotation] == pl.o.Key && js.Labels[fleet.OriginUIDLabel] == string(pl.d.Spec.Origin.UID)
}

// stale reports whether js was made for another origin or an older epoch.
func (pl *planner) stale(js *jobset.JobSet) bool {
	return js.Labels[fleet.OriginUIDLabel] != string(pl.d.Spec.Origin.UID) || fleet.Epoch(js) < pl.d.Spec.Epoch
}

// orphaned plans for a dispatch gone from the hub: every copy made for it
// is an orphan, and there is nothing left to report to.
func (pl *planner) orphaned() {
	for i := range pl.o.Copies {
		pl.retire(&pl.o.Copies[i])
	}
	pl.p.ConfirmDispatchGone = len(pl.p.Delete) > 0 || len(pl.p.Release) > 0
	if len(pl.o.Copies) > 0 {
		pl.p.State = StateDeleting
	}
}

// deleting plans for a dispatch being deleted: every copy goes, and once
// none is left the agent says so (DispatchDeleted) and lets go of it.
func (pl *planner) deleting() {
	o, d, p := pl.o, pl.d, &pl.p
	p.State = StateDeleting
	for i := range o.Copies {
		pl.retire(&o.Copies[i])
	}
	if t := o.Target; t != nil && pl.ours(t) && fleet.Epoch(t) == d.Spec.Epoch {
		// The hub learns how the copy ended, so a deleted dispatch
		// is not taken for a copy that never finished.
		p.Status = pl.nextStatus(func(st *fleet.JobSetDispatchStatus) {
			st.ObservedEpoch = fleet.Epoch(t)
			st.JobSetStatus = fleet.ReportedStatus(t)
		})
	}
	if len(o.Copies) > 0 {
		p.Waiting = "member JobSet is being deleted"
		return
	}
	p.Status = pl.nextStatus(func(st *fleet.JobSetDispatchStatus) {
		setCondition(st, d, fleet.DispatchDeleted, metav1.ConditionTrue, fleet.ReasonCopyDeleted,
			fmt.Sprintf("the member JobSet no longer exists on cluster %s", o.ClusterName))
	})
	p.RemoveFinalizer = controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer)
	p.State = ""
}

// retireStale retires the copies made for another origin or an older epoch.
func (pl *planner) retireStale() {
	for i := range pl.o.Copies {
		if pl.stale(&pl.o.Copies[i]) {
			pl.retire(&pl.o.Copies[i])
		}
	}
}

// sync plans for a live dispatch by what stands at its origin's namespace
// and name on the member.
func (pl *planner) sync() {
	t := pl.o.Target
	switch {
	case t == nil:
		pl.noCopy()
	case t.Annotations[fleet.DispatchAnnotation] == pl.o.Key && pl.stale(t):
		// The old copy must be gone before the new one takes its name.
		pl.p.Waiting = "stale member JobSet is being deleted"
		pl.p.State = StatePending
	case !pl.ours(t):
		// Someone else's JobSet: never take it over.
		pl.refuse(fleet.ReasonConflict,
			fmt.Sprintf("JobSet %s/%s already exists on cluster %s and was not created for this dispatch", t.Namespace, t.Name, pl.o.ClusterName))
	case fleet.Epoch(t) > pl.d.Spec.Epoch:
		pl.refuse(fleet.ReasonNewerEpoch,
			fmt.Sprintf("cluster %s runs JobSet %s/%s for epoch %d, newer than this dispatch's %d", pl.o.ClusterName, t.Namespace, t.Name, fleet.Epoch(t), pl.d.Spec.Epoch))
	case t.DeletionTimestamp != nil:
		pl.copyDeleting(t)
	default:
		pl.track(t)
	}
}

// noCopy plans for a live dispatch with no copy on the member: create one,
// unless it finished already, the namespace is denied, or the member
// refused it moments ago.
func (pl *planner) noCopy() {
	o, d, p := pl.o, pl.d, &pl.p
	switch {
	case finishedHere(d):
		// The copy finished and was then removed (ttlSecondsAfterFinished,
		// or by hand) after its result reached the hub: running it again
		// would be a second run of a finished JobSet.
		p.State = StateFinished
	case fleet.NamespaceDenied(d.Spec.Origin.Namespace, o.DeniedNamespaces):
		// The last line of the namespace policy: whatever the hub asks,
		// nothing of the fleet runs in a system namespace of the member.
		pl.refuse(fleet.ReasonNamespaceDenied,
			fleet.Bounded(fmt.Sprintf("cluster %s does not run JobSets of namespace %s: its agent's namespace policy denies it (built-in %s, --denied-namespaces %s)",
				o.ClusterName, d.Spec.Origin.Namespace, strings.Join(fleet.BuiltinDeniedNamespaces, ","), strings.Join(o.DeniedNamespaces, ",")), fleet.MaxMemberReason))
	case refusedRecently(d, o):
		// The member refused the copy moments ago; the hub is placing it
		// elsewhere. Try again later, in case the cause went away.
		p.State = StateRefused
		p.ReportAfter = RefusalRetryInterval - o.Now.Sub(lastRefusal(d, o))
	default:
		// Never created for this epoch, or deleted unfinished on the
		// member after its last status reached the hub: (re)create it,
		// carrying the restarts earlier copies of this epoch spent.
		restarts, towardsMax := carriedRestarts(d)
		p.AddFinalizer = !controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer)
		p.Create = NewCopy(d, restarts, towardsMax)
		p.ConfirmDispatchCurrent = !p.Create.IsSuspended()
		// Accepted is reported with the copy's first status (the copy
		// carries its restart offsets, so nothing is lost if the agent
		// stops before): one write instead of two.
		p.ReportAfter = ReportInterval
		p.State = StatePending
	}
}

// refuse reports that the member will not run the dispatch
// (Accepted=False with reason and message).
func (pl *planner) refuse(reason, message string) {
	pl.p.Status = pl.nextStatus(func(st *fleet.JobSetDispatchStatus) {
		setCondition(st, pl.d, fleet.DispatchAccepted, metav1.ConditionFalse, reason, message)
	})
	pl.p.State = StateRefused
}

// copyDeleting plans for this epoch's copy t being deleted on the member
// (its TTL, by hand, by the fencer): it still exists, so it is never
// created anew while it does. Report its last status, then let it go.
func (pl *planner) copyDeleting(t *jobset.JobSet) {
	p := &pl.p
	p.AddFinalizer = !controllerutil.ContainsFinalizer(pl.d, fleet.AgentFinalizer)
	p.Status = pl.mirror(t)
	p.State = StateDeleting
	if t.Status.TerminalState != "" {
		p.State = StateFinished
	}
	switch {
	case !controllerutil.ContainsFinalizer(t, fleet.ReportFinalizer):
		p.Waiting = "member JobSet is being deleted"
	case controllerutil.ContainsFinalizer(t, metav1.FinalizerDeleteDependents):
		p.Waiting = "Jobs of the member JobSet are being deleted"
	case pl.o.Jobs[t.UID] > 0:
		// Deleted in the background: its Jobs would run until the
		// JobSet is gone. Make it foreground.
		p.Delete = append(p.Delete, t)
		p.Waiting = "Jobs of the member JobSet are being deleted"
	case p.Status == nil:
		// The hub holds exactly what the copy ended with.
		p.Release = append(p.Release, t)
	default:
		p.Waiting = "reporting the last status of the member JobSet"
	}
}

// track plans for this epoch's live copy t: apply what the dispatch may
// still change, hold it with ReportFinalizer, and report its status,
// merging progress reports that come less than ReportInterval apart.
func (pl *planner) track(t *jobset.JobSet) {
	o, d, p := pl.o, pl.d, &pl.p
	p.AddFinalizer = !controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer)
	desired := DesiredJobSet(d)
	if o.Kueue.Managed {
		desired = LeaveToKueue(t, desired)
	}
	p.Update = MergeMutable(t, desired)
	if !controllerutil.ContainsFinalizer(t, fleet.ReportFinalizer) {
		// Adopt a copy made before the agent held ReportFinalizer.
		if p.Update == nil {
			p.Update = t.DeepCopy()
		}
		controllerutil.AddFinalizer(p.Update, fleet.ReportFinalizer)
	}
	p.ConfirmDispatchCurrent = p.Update != nil && t.IsSuspended() && !p.Update.IsSuspended()
	p.Status = pl.mirror(t)
	if since := o.Now.Sub(o.LastReport); p.Status != nil && !urgentReport(&d.Status, p.Status) && since < ReportInterval {
		p.Status, p.ReportAfter = nil, ReportInterval-since
	}
	if o.Kueue.Queued != nil && p.ReportAfter == 0 {
		p.ReportAfter = KueueRecheckInterval
	}
	pl.kueueWorkloads(t)
	switch {
	case t.Status.TerminalState != "":
		p.State = StateFinished
	case t.IsSuspended():
		p.State = StateSuspended
	default:
		p.State = StateRunning
	}
}

// retire plans the removal of a copy that must go whatever it reports
// (stale, orphaned, or its dispatch deleting): delete it in the foreground,
// and once its Jobs are gone release ReportFinalizer.
func (pl *planner) retire(js *jobset.JobSet) {
	p := &pl.p
	p.Waiting = "member JobSet is being deleted"
	switch {
	case js.DeletionTimestamp == nil:
		p.Delete = append(p.Delete, js)
	case !controllerutil.ContainsFinalizer(js, fleet.ReportFinalizer):
		// Going away on its own.
	case controllerutil.ContainsFinalizer(js, metav1.FinalizerDeleteDependents):
		// The garbage collector is deleting its Jobs.
	case pl.o.Jobs[js.UID] > 0:
		p.Delete = append(p.Delete, js)
	default:
		p.Release = append(p.Release, js)
	}
}

// mirror is the dispatch's status with copy t's status reported, or nil
// when the hub already holds it.
func (pl *planner) mirror(t *jobset.JobSet) *fleet.JobSetDispatchStatus {
	return pl.nextStatus(func(st *fleet.JobSetDispatchStatus) {
		accepted(st, pl.d, pl.o.ClusterName)
		st.ObservedEpoch = fleet.Epoch(t)
		st.JobSetStatus = fleet.ReportedStatus(t)
		st.Queued = pl.o.Kueue.Queued
		if pl.o.PodsRan {
			setCondition(st, pl.d, fleet.DispatchStarted, metav1.ConditionTrue, ReasonPodsRan,
				fmt.Sprintf("a Pod of epoch %d ran on cluster %s", pl.d.Spec.Epoch, pl.o.ClusterName))
		}
	})
}

// nextStatus is nextStatus for the planner's dispatch, now.
func (pl *planner) nextStatus(mutate func(*fleet.JobSetDispatchStatus)) *fleet.JobSetDispatchStatus {
	return nextStatus(pl.d, pl.o.Now, mutate)
}

// NewCopy is the member JobSet to create for d: DesiredJobSet, held by
// ReportFinalizer, and, when earlier copies of this epoch spent restarts on
// this member (a copy deleted unfinished and created again), annotated with
// them and with failurePolicy.maxRestarts reduced by those that count
// towards it, so restarts are neither lost nor granted twice.
func NewCopy(d *fleet.JobSetDispatch, restarts, towardsMax int32) *jobset.JobSet {
	js := DesiredJobSet(d)
	controllerutil.AddFinalizer(js, fleet.ReportFinalizer)
	if restarts == 0 && towardsMax == 0 {
		return js
	}
	js.Annotations[fleet.RestartsOffsetAnnotation] = strconv.FormatInt(int64(restarts), 10)
	js.Annotations[fleet.RestartsTowardsMaxOffsetAnnotation] = strconv.FormatInt(int64(towardsMax), 10)
	if fp := js.Spec.FailurePolicy; fp != nil {
		fp.MaxRestarts = max(fp.MaxRestarts-towardsMax, 0)
	}
	return js
}

// urgentReport says whether a new dispatch status carries news the hub acts
// on, rather than progress: a terminal state, restarts, a change of the
// copy's conditions, the reporting of another epoch.
func urgentReport(old, next *fleet.JobSetDispatchStatus) bool {
	o, n := &old.JobSetStatus, &next.JobSetStatus
	if old.ObservedEpoch != 0 && old.ObservedEpoch != next.ObservedEpoch {
		return true
	}
	if o.TerminalState != n.TerminalState || o.Restarts != n.Restarts || o.RestartsCountTowardsMax != n.RestartsCountTowardsMax || len(o.Conditions) != len(n.Conditions) {
		return true
	}
	for _, c := range n.Conditions {
		if prev := meta.FindStatusCondition(o.Conditions, c.Type); prev == nil || prev.Status != c.Status || prev.Reason != c.Reason {
			return true
		}
	}
	// Started ends the hub's start deadline: it must not wait for the
	// merge (Accepted, by design, goes with the first progress report).
	if meta.IsStatusConditionTrue(next.Conditions, fleet.DispatchStarted) && !meta.IsStatusConditionTrue(old.Conditions, fleet.DispatchStarted) {
		return true
	}
	return false
}

// carriedRestarts are the restarts the dispatch status holds for its
// current epoch: what copies of this epoch spent before.
func carriedRestarts(d *fleet.JobSetDispatch) (restarts, towardsMax int32) {
	if d.Status.ObservedEpoch != d.Spec.Epoch {
		return 0, 0
	}
	return d.Status.JobSetStatus.Restarts, d.Status.JobSetStatus.RestartsCountTowardsMax
}

// finishedHere reports whether the dispatch's status already holds a terminal
// JobSet status for its current epoch.
func finishedHere(d *fleet.JobSetDispatch) bool {
	return d.Status.ObservedEpoch == d.Spec.Epoch && d.Status.JobSetStatus.TerminalState != ""
}

// Refused is d's status once the member refused to create its copy for a
// lasting reason (see ClassifyCreateError): Accepted=False with that reason
// and the member's message, bounded because the hub quotes it in a list of
// members. Nil when the status already says so.
func Refused(d *fleet.JobSetDispatch, now metav1.Time, cluster, reason, message string) *fleet.JobSetDispatchStatus {
	return nextStatus(d, now, func(st *fleet.JobSetDispatchStatus) {
		setCondition(st, d, fleet.DispatchAccepted, metav1.ConditionFalse, reason,
			fleet.Bounded(fmt.Sprintf("cluster %s refused JobSet %s/%s: %s", cluster, d.Spec.Origin.Namespace, d.Spec.Origin.Name, message), fleet.MaxMemberReason))
	})
}

// retriedRefusals are the refusals the agent tries again after
// RefusalRetryInterval.
var retriedRefusals = map[string]bool{fleet.ReasonMemberRefused: true, fleet.ReasonQuotaExceeded: true, fleet.ReasonNamespaceTerminating: true, fleet.ReasonNamespaceMissing: true}

// refusedRecently reports whether the agent refused d's copy for this
// generation less than RefusalRetryInterval ago.
func refusedRecently(d *fleet.JobSetDispatch, o Observed) bool {
	c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchAccepted)
	return c != nil && c.Status == metav1.ConditionFalse && retriedRefusals[c.Reason] && c.ObservedGeneration == d.Generation &&
		o.Now.Sub(lastRefusal(d, o)) < RefusalRetryInterval
}

// lastRefusal is when the copy was last refused: the status's sync time,
// or this agent's own last attempt, which writes nothing when the refusal
// says what the status already does.
func lastRefusal(d *fleet.JobSetDispatch, o Observed) time.Time {
	if d.Status.LastSyncTime != nil && d.Status.LastSyncTime.After(o.LastReport) {
		return d.Status.LastSyncTime.Time
	}
	return o.LastReport
}

func accepted(st *fleet.JobSetDispatchStatus, d *fleet.JobSetDispatch, cluster string) {
	setCondition(st, d, fleet.DispatchAccepted, metav1.ConditionTrue, fleet.ReasonAccepted,
		fmt.Sprintf("running as JobSet %s/%s on cluster %s", d.Spec.Origin.Namespace, d.Spec.Origin.Name, cluster))
	st.ObservedGeneration = d.Generation
}

func setCondition(st *fleet.JobSetDispatchStatus, d *fleet.JobSetDispatch, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: d.Generation,
	})
}

// nextStatus applies mutate to a copy of d's status and returns it with a
// new lastSyncTime, or nil when nothing but the sync time would change: the
// hub is written only on change.
func nextStatus(d *fleet.JobSetDispatch, now metav1.Time, mutate func(*fleet.JobSetDispatchStatus)) *fleet.JobSetDispatchStatus {
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
func StatusChanged(old, next *fleet.JobSetDispatchStatus) bool {
	a, b := old.DeepCopy(), next.DeepCopy()
	a.LastSyncTime, b.LastSyncTime = nil, nil
	return !equality.Semantic.DeepEqual(a, b)
}

// ClassifyCreateError tells a lasting refusal of a member copy's create
// from a transient failure. Lasting: the namespace is being deleted, a
// ResourceQuota leaves no room, or the apiserver or its admission (webhook,
// ValidatingAdmissionPolicy) forbids the copy, finds it invalid or too
// large; trying again will not help, so the agent reports the refusal
// (Accepted=False with reason) and the hub places the JobSet elsewhere.
// Everything else (timeouts, conflicts, a webhook that does not answer, a
// quota whose usage is not yet known) is retried with backoff.
func ClassifyCreateError(err error) (reason string, lasting bool) {
	switch {
	case err == nil:
		return "", false
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return fleet.ReasonNamespaceTerminating, true
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "status unknown for quota"):
		// The quota controller has not computed the quota's usage yet.
		return "", false
	case apierrors.IsForbidden(err) && quotaRefusal(err.Error()):
		return fleet.ReasonQuotaExceeded, true
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsRequestEntityTooLargeError(err):
		return fleet.ReasonMemberRefused, true
	}
	return "", false
}

// quotaRefusal reports whether msg is the ResourceQuota admission's refusal.
func quotaRefusal(msg string) bool {
	for _, s := range []string{"exceeded quota:", "insufficient quota", "failed quota:"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
