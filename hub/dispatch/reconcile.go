package dispatch

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

const eventAction = "Dispatch"

// requeueMargin makes sure a timeout has passed when the requeue fires.
const requeueMargin = 100 * time.Millisecond

// observed is everything one reconcile reads.
type observed struct {
	js         *jobset.JobSet
	dispatches []fleet.JobSetDispatch // this JobSet's, in any member namespace
	members    map[string]inventory.Member
	memberList []inventory.Member
	now        time.Time
}

func (o *observed) member(name string) (inventory.Member, bool) {
	m, ok := o.members[name]
	return m, ok
}

// Reconcile drives one hub JobSet.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx).WithValues("jobset", req.NamespacedName.String())
	ctx = ctrl.LoggerInto(ctx, log)

	js := &jobset.JobSet{}
	if err := r.client.Get(ctx, req.NamespacedName, js); err != nil {
		if apierrors.IsNotFound(err) {
			r.gauges.set(req.NamespacedName, "", false)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading JobSet %s: %w", req.NamespacedName, err)
	}
	if ptr.Deref(js.Spec.ManagedBy, "") != fleet.ManagedByFleet {
		r.gauges.set(req.NamespacedName, "", false)
		return reconcile.Result{}, nil
	}
	o, err := r.observe(ctx, js)
	if err != nil {
		return reconcile.Result{}, err
	}
	if js.DeletionTimestamp != nil {
		return r.finalize(ctx, o)
	}
	if !controllerutil.ContainsFinalizer(js, JobSetFinalizer) {
		patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(js, JobSetFinalizer)
		if err := r.client.Patch(ctx, js, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	return r.sync(ctx, o)
}

func (r *Reconciler) observe(ctx context.Context, js *jobset.JobSet) (*observed, error) {
	list := &fleet.JobSetDispatchList{}
	if err := r.client.List(ctx, list, client.MatchingFields{OriginUIDIndex: string(js.UID)}); err != nil {
		return nil, fmt.Errorf("listing dispatches of JobSet: %w", err)
	}
	members, err := r.inventory.Members(ctx)
	if err != nil {
		return nil, err
	}
	o := &observed{js: js, dispatches: list.Items, members: map[string]inventory.Member{}, memberList: members, now: r.opts.Clock.Now()}
	for _, m := range members {
		o.members[m.Name] = m
	}
	return o, nil
}

// sync moves a live JobSet towards running on exactly one healthy member.
func (r *Reconciler) sync(ctx context.Context, o *observed) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	js := o.js
	status := js.Status.DeepCopy()
	rec := RecordedPlacement(js)
	timeout := r.inventory.MemberLostTimeout()

	if rec.Cluster == "" {
		if d := newestLive(o.dispatches); d != nil {
			// A dispatch exists but the JobSet does not say where: adopt it
			// rather than place again, so there is never a second copy.
			adopted := Placement{Cluster: MemberOf(d), Epoch: max(rec.Epoch, d.Spec.Epoch), Carried: rec.Carried}
			if err := r.record(ctx, js, adopted); err != nil {
				return reconcile.Result{}, err
			}
			rec = adopted
			r.event(js, corev1.EventTypeNormal, ReasonAdopted, "adopted dispatch %s/%s (epoch %d)", d.Namespace, d.Name, d.Spec.Epoch)
			r.setCondition(status, ConditionDispatched, true, ReasonDispatched, dispatchedMessage(rec))
		}
	}

	m, known := o.member(rec.Cluster)
	lost := rec.Cluster != "" && (!known || m.Lost(timeout))
	current := currentDispatch(o.dispatches, rec)

	switch {
	case rec.Cluster == "":
		next, err := r.place(ctx, o, rec, nil, status)
		if err != nil {
			return reconcile.Result{}, err
		}
		rec = next

	case lost && !IsFinished(status):
		why := fmt.Sprintf("member %s lost: no heartbeat for more than %s", rec.Cluster, timeout)
		if !known {
			why = fmt.Sprintf("member %s lost: it left the fleet", rec.Cluster)
		}
		switch OnMemberLost(js) {
		case OnMemberLostFail:
			log.Info("member lost; failing the JobSet as asked", "member", rec.Cluster)
			failedByHub(status, why)
		case OnMemberLostWait:
			// Keep waiting for the member; the stale condition says why.
		default:
			next, err := r.place(ctx, o, rec, map[string]string{rec.Cluster: why}, status)
			if err != nil {
				return reconcile.Result{}, err
			}
			rec = next
		}

	case current == nil && !IsFinished(status):
		// The decision is recorded but its dispatch is missing: the hub
		// stopped between recording and creating, or the cache lags. Create
		// exactly the recorded dispatch; an existing one is adopted.
		if _, err := r.createDispatch(ctx, js, rec); err != nil {
			return reconcile.Result{}, err
		}
		r.markDispatched(status, rec)

	case current != nil:
		if err := r.propagateSpec(ctx, js, current, rec); err != nil {
			return reconcile.Result{}, err
		}
		mirrored := MirrorStatus(*status, current, rec.Carried)
		if !IsFinished(status) && IsFinished(&mirrored) {
			r.event(js, corev1.EventTypeNormal, mirrored.TerminalState, "JobSet %s on member %s", mirrored.TerminalState, rec.Cluster)
		}
		*status = mirrored
		if msg, rejected := AgentRejected(current); rejected {
			r.setCondition(status, ConditionDispatched, false, ReasonMemberRejected, msg)
		} else {
			r.markDispatched(status, rec)
		}
	}

	// The member's heartbeat decides whether the status shown is current.
	m, known = o.member(rec.Cluster)
	lost = rec.Cluster != "" && (!known || m.Lost(timeout))
	var result reconcile.Result
	if rec.Cluster != "" && meta.FindStatusCondition(status.Conditions, ConditionDispatched) != nil {
		switch {
		case lost:
			r.setCondition(status, ConditionMemberStatusStale, true, ReasonMemberLost,
				fmt.Sprintf("member %s is lost (%s); status may be out of date", rec.Cluster, memberProblem(m, known)))
		case !m.HeartbeatFresh:
			r.setCondition(status, ConditionMemberStatusStale, true, ReasonHeartbeatStale,
				fmt.Sprintf("member %s: %s; status may be out of date", rec.Cluster, m.Reason))
			result.RequeueAfter = m.LostIn(timeout) + requeueMargin
		default:
			r.setCondition(status, ConditionMemberStatusStale, false, ReasonHeartbeatFresh,
				fmt.Sprintf("member %s renews its heartbeat", rec.Cluster))
		}
	}

	// Any dispatch but the current one is stale; so is the current one of a
	// finished JobSet whose member is gone (a returning agent must not run it).
	keep := currentDispatch(o.dispatches, rec)
	if lost && IsFinished(status) {
		keep = nil
	}
	if err := r.removeDispatches(ctx, o, keep); err != nil {
		return reconcile.Result{}, err
	}

	if err := r.writeStatus(ctx, js, status); err != nil {
		return reconcile.Result{}, err
	}
	r.updateGauges(js, rec, status)

	// ttlSecondsAfterFinished holds on the hub as on a single cluster: the
	// member removes its copy, the hub removes the user's JobSet.
	if expiry, ok := TTLExpiry(js, status); ok {
		if wait := expiry.Sub(o.now); wait > 0 {
			if result.RequeueAfter == 0 || wait+requeueMargin < result.RequeueAfter {
				result.RequeueAfter = wait + requeueMargin
			}
		} else {
			log.Info("deleting finished JobSet: ttlSecondsAfterFinished passed", "ttlSecondsAfterFinished", *js.Spec.TTLSecondsAfterFinished)
			if err := r.client.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, fmt.Errorf("deleting JobSet after its TTL: %w", err)
			}
		}
	}
	return result, nil
}

// place chooses a member and dispatches the JobSet there. excluded names
// the member being moved away from, if any. It returns the (possibly new)
// recorded placement.
func (r *Reconciler) place(ctx context.Context, o *observed, rec Placement, excluded map[string]string, status *jobset.JobSetStatus) (Placement, error) {
	js := o.js
	log := ctrl.LoggerFrom(ctx)
	r.placing.Lock()
	defer r.placing.Unlock()

	all := &fleet.JobSetDispatchList{}
	if err := r.client.List(ctx, all); err != nil {
		return rec, fmt.Errorf("listing dispatches for commitments: %w", err)
	}
	res, err := placement.Place(placement.Request{
		JobSet:    js,
		Members:   o.memberList,
		Committed: r.ledger.committed(all.Items, o.memberList, js.UID),
		Excluded:  excluded,
		Policy:    r.opts.Policy,
	})
	if err != nil {
		// Only a malformed annotation gets here; retrying cannot help.
		r.setCondition(status, ConditionDispatched, false, "InvalidPlacement", err.Error())
		return rec, nil
	}
	if err := r.publishDecision(ctx, js, res); err != nil {
		return rec, err
	}
	if res.Cluster == "" {
		reason, msg := ReasonNoFit, "no member cluster fits: "+res.Explain()
		if len(excluded) > 0 {
			reason, msg = ReasonMemberLost, "no other member cluster fits: "+res.Explain()
		}
		log.V(1).Info("no member fits", "reasons", res.Explain())
		r.setCondition(status, ConditionDispatched, false, reason, msg)
		return rec, nil
	}

	next := Placement{Cluster: res.Cluster, Epoch: nextEpoch(rec, o.dispatches), Carried: rec.Carried}
	moving := rec.Cluster != ""
	if moving {
		// Restarts spent on the lost member count on the next one.
		next.Carried = Carried{Restarts: status.Restarts, RestartsTowardsMax: status.RestartsCountTowardsMax}
	}
	// Record before creating: after a crash, the next reconcile recreates
	// exactly this dispatch instead of placing again.
	if err := r.record(ctx, js, next); err != nil {
		return rec, err
	}
	r.ledger.put(js.UID, commitment{member: next.Cluster, epoch: next.Epoch, resources: res.Requests})
	if _, err := r.createDispatch(ctx, js, next); err != nil {
		return next, err
	}
	if next.Epoch == 1 {
		dispatchLatency.Observe(r.opts.Clock.Since(js.CreationTimestamp.Time).Seconds())
	}
	reason := ReasonDispatched
	if moving {
		reason = ReasonRedispatched
		r.event(js, corev1.EventTypeWarning, ReasonRedispatched, "%s; moved to member %s (epoch %d, %d restarts carried)",
			excluded[rec.Cluster], next.Cluster, next.Epoch, next.Carried.Restarts)
	}
	log.Info("dispatched", "member", next.Cluster, "epoch", next.Epoch, "reason", res.Reason())
	r.setCondition(status, ConditionDispatched, true, reason, dispatchedMessage(next))
	return next, nil
}

// markDispatched sets Dispatched=True for rec, leaving a condition that
// already says so alone (so a Redispatched reason stays).
func (r *Reconciler) markDispatched(status *jobset.JobSetStatus, rec Placement) {
	msg := dispatchedMessage(rec)
	c := meta.FindStatusCondition(status.Conditions, ConditionDispatched)
	if c != nil && c.Status == metav1.ConditionTrue && c.Message == msg {
		return
	}
	reason := ReasonDispatched
	if c != nil && (c.Status == metav1.ConditionTrue || c.Reason == ReasonMemberLost) {
		// It ran elsewhere before: this is a move (seen here when the
		// status written by place() is not in the cache yet).
		reason = ReasonRedispatched
	}
	r.setCondition(status, ConditionDispatched, true, reason, msg)
}

func dispatchedMessage(p Placement) string {
	return fmt.Sprintf("dispatched to member %s (epoch %d)", p.Cluster, p.Epoch)
}

func memberProblem(m inventory.Member, known bool) string {
	if !known {
		return "not in the fleet"
	}
	return m.Reason
}

// nextEpoch is one more than any epoch recorded or seen on a dispatch.
func nextEpoch(rec Placement, dispatches []fleet.JobSetDispatch) int64 {
	e := rec.Epoch
	for i := range dispatches {
		e = max(e, dispatches[i].Spec.Epoch)
	}
	return e + 1
}

func currentDispatch(dispatches []fleet.JobSetDispatch, rec Placement) *fleet.JobSetDispatch {
	if rec.Cluster == "" {
		return nil
	}
	for i := range dispatches {
		d := &dispatches[i]
		if d.Namespace == fleet.MemberNamespace(rec.Cluster) && d.Spec.Epoch == rec.Epoch && d.DeletionTimestamp == nil {
			return d
		}
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

// record writes a placement onto the JobSet. The optimistic lock turns a
// decision made on a stale cached JobSet into a conflict and a retry.
func (r *Reconciler) record(ctx context.Context, js *jobset.JobSet, p Placement) error {
	patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
	p.Record(js)
	if err := r.client.Patch(ctx, js, patch); err != nil {
		return fmt.Errorf("recording placement on member %s epoch %d: %w", p.Cluster, p.Epoch, err)
	}
	return nil
}

// createDispatch creates the dispatch for p; one already there for the same
// epoch is adopted.
func (r *Reconciler) createDispatch(ctx context.Context, js *jobset.JobSet, p Placement) (*fleet.JobSetDispatch, error) {
	d := NewDispatch(js, p)
	err := r.client.Create(ctx, d)
	switch {
	case err == nil:
		r.event(js, corev1.EventTypeNormal, ReasonDispatched, "created JobSetDispatch %s/%s (epoch %d)", d.Namespace, d.Name, p.Epoch)
		return d, nil
	case apierrors.IsAlreadyExists(err):
		// Ours from before a restart, or an older epoch still being removed
		// (the stale-dispatch cleanup deletes it and its deletion requeues us).
		return nil, nil
	default:
		return nil, fmt.Errorf("creating JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
	}
}

// propagateSpec keeps the dispatch's template equal to the JobSet's.
func (r *Reconciler) propagateSpec(ctx context.Context, js *jobset.JobSet, d *fleet.JobSetDispatch, rec Placement) error {
	want := Template(js, rec.Carried)
	if equality.Semantic.DeepEqual(d.Spec.JobSet, want) {
		return nil
	}
	wasSuspended := ptr.Deref(d.Spec.JobSet.Spec.Suspend, false)
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.JobSet = want
	if err := r.client.Patch(ctx, d, patch); err != nil {
		return fmt.Errorf("propagating spec to JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
	}
	switch suspended := ptr.Deref(want.Spec.Suspend, false); {
	case suspended && !wasSuspended:
		r.event(js, corev1.EventTypeNormal, "Suspending", "suspend sent to member %s", rec.Cluster)
	case !suspended && wasSuspended:
		r.event(js, corev1.EventTypeNormal, "Resuming", "resume sent to member %s", rec.Cluster)
	default:
		r.event(js, corev1.EventTypeNormal, ReasonSpecPropagated, "spec change sent to member %s", rec.Cluster)
	}
	return nil
}

// removeDispatches deletes every dispatch of the JobSet except keep. A
// dispatch is let go (finalizer removed) once its agent reports the member
// copy deleted, or right away when its member is lost: a returning agent
// removes copies whose dispatch is gone.
func (r *Reconciler) removeDispatches(ctx context.Context, o *observed, keep *fleet.JobSetDispatch) error {
	for i := range o.dispatches {
		d := &o.dispatches[i]
		if keep != nil && d.UID == keep.UID {
			continue
		}
		if _, err := r.removeDispatch(ctx, o, d); err != nil {
			return err
		}
	}
	return nil
}

// removeDispatch deletes d and reports whether it is gone for good (the
// agent reported or the member is lost), or how long until the member
// counts as lost.
func (r *Reconciler) removeDispatch(ctx context.Context, o *observed, d *fleet.JobSetDispatch) (time.Duration, error) {
	if d.DeletionTimestamp == nil {
		err := r.client.Delete(ctx, d, client.Preconditions{UID: ptr.To(d.UID)})
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("deleting JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
		}
		r.event(o.js, corev1.EventTypeNormal, ReasonDeleting, "deleting JobSetDispatch %s/%s (epoch %d) on member %s", d.Namespace, d.Name, d.Spec.Epoch, MemberOf(d))
	}
	m, known := o.member(MemberOf(d))
	timeout := r.inventory.MemberLostTimeout()
	lost := !known || m.Lost(timeout)
	if !AgentDeleted(d) && !lost && controllerutil.ContainsFinalizer(d, DispatchFinalizer) {
		return m.LostIn(timeout), nil
	}
	if controllerutil.ContainsFinalizer(d, DispatchFinalizer) {
		patch := client.MergeFrom(d.DeepCopy())
		controllerutil.RemoveFinalizer(d, DispatchFinalizer)
		if err := r.client.Patch(ctx, d, patch); err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("releasing JobSetDispatch %s/%s: %w", d.Namespace, d.Name, err)
		}
		why := "member reported its copy deleted"
		if !AgentDeleted(d) {
			why = "member lost; a returning agent removes its copy"
		}
		r.event(o.js, corev1.EventTypeNormal, ReasonReleased, "released JobSetDispatch %s/%s: %s", d.Namespace, d.Name, why)
	}
	return 0, nil
}

// finalize removes the member copy, then lets the JobSet go.
func (r *Reconciler) finalize(ctx context.Context, o *observed) (reconcile.Result, error) {
	js := o.js
	if !controllerutil.ContainsFinalizer(js, JobSetFinalizer) {
		return reconcile.Result{}, nil
	}
	var wait time.Duration
	for i := range o.dispatches {
		w, err := r.removeDispatch(ctx, o, &o.dispatches[i])
		if err != nil {
			return reconcile.Result{}, err
		}
		if w > 0 && (wait == 0 || w < wait) {
			wait = w
		}
	}
	if wait > 0 {
		ctrl.LoggerFrom(ctx).V(1).Info("waiting for members to delete their copies", "atMost", wait)
		return reconcile.Result{RequeueAfter: wait + requeueMargin}, nil
	}
	patch := client.MergeFrom(js.DeepCopy())
	controllerutil.RemoveFinalizer(js, JobSetFinalizer)
	if err := r.client.Patch(ctx, js, patch); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("removing finalizer: %w", err)
	}
	r.ledger.forget(js.UID)
	r.gauges.set(client.ObjectKeyFromObject(js), "", false)
	ctrl.LoggerFrom(ctx).Info("member copies removed; JobSet released")
	return reconcile.Result{}, nil
}

// publishDecision creates or updates the JobSet's PlacementDecision.
func (r *Reconciler) publishDecision(ctx context.Context, js *jobset.JobSet, res placement.Result) error {
	want := placement.Decision(js, res, r.inventory.Namespace())
	have := &clusterinventory.PlacementDecision{}
	err := r.client.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PlacementDecision: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading PlacementDecision: %w", err)
	}
	if equality.Semantic.DeepEqual(have.Decisions, want.Decisions) && have.Annotations[placement.ReasonsAnnotation] == want.Annotations[placement.ReasonsAnnotation] &&
		have.SchedulerName == want.SchedulerName {
		return nil
	}
	patch := client.MergeFrom(have.DeepCopy())
	have.Decisions, have.SchedulerName = want.Decisions, want.SchedulerName
	if have.Annotations == nil {
		have.Annotations = map[string]string{}
	}
	have.Annotations[placement.ReasonsAnnotation] = want.Annotations[placement.ReasonsAnnotation]
	if err := r.client.Patch(ctx, have, patch); err != nil {
		return fmt.Errorf("updating PlacementDecision: %w", err)
	}
	return nil
}

// writeStatus patches the status when it changed, with an event for each
// hub condition that changed status or reason.
func (r *Reconciler) writeStatus(ctx context.Context, js *jobset.JobSet, status *jobset.JobSetStatus) error {
	if equality.Semantic.DeepEqual(js.Status, *status) {
		return nil
	}
	for _, t := range []string{ConditionDispatched, ConditionMemberStatusStale} {
		before, after := meta.FindStatusCondition(js.Status.Conditions, t), meta.FindStatusCondition(status.Conditions, t)
		if after == nil || (before != nil && before.Status == after.Status && before.Reason == after.Reason) {
			continue
		}
		typ := corev1.EventTypeNormal
		if (t == ConditionDispatched) != (after.Status == metav1.ConditionTrue) {
			typ = corev1.EventTypeWarning
		}
		if !(t == ConditionMemberStatusStale && before == nil && after.Status == metav1.ConditionFalse) {
			r.event(js, typ, after.Reason, "%s", after.Message)
		}
	}
	patch := client.MergeFrom(js.DeepCopy())
	js.Status = *status
	if err := r.client.Status().Patch(ctx, js, patch); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}

func (r *Reconciler) setCondition(s *jobset.JobSetStatus, typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: typ, Status: st, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(r.opts.Clock.Now()),
	})
}

func (r *Reconciler) updateGauges(js *jobset.JobSet, rec Placement, s *jobset.JobSetStatus) {
	key := types.NamespacedName{Namespace: js.Namespace, Name: js.Name}
	switch {
	case IsFinished(s):
		r.gauges.set(key, "", false)
	case meta.IsStatusConditionTrue(s.Conditions, ConditionDispatched):
		r.gauges.set(key, rec.Cluster, true)
	default:
		r.gauges.set(key, "", true)
	}
}

func (r *Reconciler) event(js *jobset.JobSet, typ, reason, format string, args ...any) {
	r.recorder.Eventf(js, nil, typ, reason, eventAction, format, args...)
}
