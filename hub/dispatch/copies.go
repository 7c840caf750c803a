package dispatch

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
)

// The hub's own look at, and stop of, copies on silent members it has
// access to (package fence). Neither waits for the member: a member the hub
// needs this for is silent and may not answer at all, and a reconcile that
// waited would hold one of the workers every JobSet shares. The fence
// probes each member in the background, one probe at a time, and the
// dispatcher watches Access.Probed (SetupWithManager), which reconciles the
// member's JobSets when a probe finished: no polling, no guessed requeue.

// observeCopies takes, from the fence's last probe, what the hub saw itself
// of the copies on silent members that hold a dispatch not yet known to be
// stopped.
func (r *Reconciler) observeCopies(_ context.Context, o *Observed) {
	if r.opts.Access == nil {
		return
	}
	for _, d := range append(append([]fleet.JobSetDispatch{}, o.Dispatches...), o.Orphans...) {
		name := memberOf(&d)
		m, known := o.Members[name]
		if !known || !m.Lost(o.LostTimeout) || !controllerutil.ContainsFinalizer(&d, fleet.DispatchFinalizer) || !r.opts.Access.Available(m.Profile) {
			continue
		}
		if _, seen := o.Copies[name]; seen {
			continue
		}
		c, err := r.opts.Access.Look(m.Profile, d.Spec.Origin)
		if err != nil {
			if o.CopyErrors == nil {
				o.CopyErrors = map[string]string{}
			}
			o.CopyErrors[name] = fleet.Bounded(err.Error(), fleet.MaxMemberReason)
			continue
		}
		if o.Copies == nil {
			o.Copies = map[string]fence.Copy{}
		}
		o.Copies[name] = c
	}
}

// stopCopy has the fence take the next step towards stopping the JobSet's
// copy on a silent member, through the hub's own access to it.
func (r *Reconciler) stopCopy(_ context.Context, o *Observed, member string) error {
	m := o.Members[member]
	var origin fleet.Origin
	for _, d := range append(append([]fleet.JobSetDispatch{}, o.Dispatches...), o.Orphans...) {
		if memberOf(&d) == member {
			origin = d.Spec.Origin
			break
		}
	}
	if err := r.opts.Access.Stop(m.Profile, origin); err != nil {
		return err
	}
	if !o.Copies[member].Deleting {
		r.event(o, corev1.EventTypeWarning, fleet.ReasonCopyStopped, "member %s is silent: the hub is stopping the copy there through its own access to the member", member)
	}
	return nil
}
