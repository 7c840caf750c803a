package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// How Join and Unjoin tell the hub that a member's copies are stopped, and
// how a takeover revokes the cluster that held a name before.

// memberDispatches lists the dispatches in memberNS; none where the
// namespace or the CRD is missing.
func memberDispatches(ctx context.Context, hub client.Client, memberNS string) ([]fleet.JobSetDispatch, error) {
	var list fleet.JobSetDispatchList
	if err := hub.List(ctx, &list, client.InNamespace(memberNS)); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing dispatches in %s: %w", memberNS, err)
	}
	return list.Items, nil
}

// copyMayRun says whether the member may still run a copy of d: its agent
// holds d (it adds its finalizer before it creates a copy) and nobody has
// yet said the copy is gone (DispatchDeleted=True).
func copyMayRun(d *fleet.JobSetDispatch) bool {
	return controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer) &&
		!meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted)
}

// unconfirmed are the dispatches of memberNS whose copies may still run.
func unconfirmed(ctx context.Context, hub client.Client, memberNS string) ([]fleet.JobSetDispatch, error) {
	all, err := memberDispatches(ctx, hub, memberNS)
	if err != nil {
		return nil, err
	}
	var out []fleet.JobSetDispatch
	for i := range all {
		if copyMayRun(&all[i]) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// refuseUnconfirmed is an error naming the dispatches of memberNS whose
// copies may still run on the cluster that held the name, and how to give
// the proof a takeover needs; nil when there are none.
func refuseUnconfirmed(ctx context.Context, hub client.Client, memberNS, cluster string) error {
	live, err := unconfirmed(ctx, hub, memberNS)
	if err != nil || len(live) == 0 {
		return err
	}
	const shown = 10
	var names []string
	for i := range live {
		if i == shown {
			names = append(names, fmt.Sprintf("and %d more", len(live)-shown))
			break
		}
		names = append(names, fmt.Sprintf("%s (JobSet %s/%s, epoch %d)", live[i].Name, live[i].Spec.Origin.Namespace, live[i].Spec.Origin.Name, live[i].Spec.Epoch))
	}
	return fmt.Errorf("the cluster that held the name %q may still run %d of the fleet's JobSets (dispatches in %s: %s); "+
		"a takeover does not hand them to the new cluster without proof: stop them on the old cluster (or make sure it is gone), "+
		"then run join again with --force %s",
		cluster, len(live), memberNS, strings.Join(names, ", "), ConfirmCopiesStoppedFlag)
}

// takeOver revokes the cluster that held the member's name (oldClusterID)
// and settles its dispatches, before the new cluster gets a token: the
// agent's ServiceAccount is deleted and created again, so the old agent's
// bound tokens (tied to the old UID) stop authenticating and it can take
// no more dispatches; then every dispatch it may still run is, with
// ConfirmCopiesStopped, marked stopped, deleted and released, and without
// it the takeover stops with the list. The new agent never sees them live.
func takeOver(ctx context.Context, hub client.Client, memberNS, oldClusterID string, opts Options) error {
	if err := recreateServiceAccount(ctx, hub, memberNS); err != nil {
		return err
	}
	// Checked again now that the old agent can take no more.
	if !opts.ConfirmCopiesStopped {
		if err := refuseUnconfirmed(ctx, hub, memberNS, opts.ClusterName); err != nil {
			return fmt.Errorf("the old cluster's agent is revoked, but %w", err)
		}
		return nil
	}
	live, err := unconfirmed(ctx, hub, memberNS)
	if err != nil {
		return err
	}
	who := operator(ctx, hub)
	for i := range live {
		d := &live[i]
		msg := fmt.Sprintf("%s stated with `jobset-fleet-agent join --force %s` that the copy of epoch %d on the cluster that held the name %s (kube-system UID %s) is stopped",
			who, ConfirmCopiesStoppedFlag, d.Spec.Epoch, opts.ClusterName, oldClusterID)
		if err := retireDispatch(ctx, hub, d, fleet.ReasonStopConfirmed, msg, nil); err != nil {
			return err
		}
	}
	return nil
}

// recreateServiceAccount deletes the agent's ServiceAccount in ns and
// creates it again with a new UID.
func recreateServiceAccount(ctx context.Context, hub client.Client, ns string) error {
	key := client.ObjectKey{Namespace: ns, Name: AgentServiceAccount}
	old := &corev1.ServiceAccount{}
	switch err := hub.Get(ctx, key, old); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading ServiceAccount %s: %w", key, err)
	default:
		if err := hub.Delete(ctx, old, client.Preconditions{UID: &old.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ServiceAccount %s to revoke the old agent's tokens: %w", key, err)
		}
	}
	// A ServiceAccount has no finalizers, but its deletion may take a
	// moment to be seen.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := hub.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: AgentServiceAccount}})
		if apierrors.IsAlreadyExists(err) {
			cur := &corev1.ServiceAccount{}
			if err := hub.Get(ctx, key, cur); client.IgnoreNotFound(err) != nil {
				return false, err
			}
			// Someone (a concurrent join) created it anew: just as good.
			return cur.UID != "" && cur.UID != old.UID, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("creating ServiceAccount %s anew: %w", key, err)
	}
	return nil
}

// retireDispatch records that the copy of d is known stopped
// (DispatchDeleted=True with reason and message, and the copy's final
// report when end has one), deletes d and releases the agent's finalizer:
// in that order, so no released dispatch ever lacks the proof, and a
// deleting dispatch can take no new finalizer. It is how Unjoin (reason
// ReasonUnjoined or ReasonStopConfirmed) and a takeover (reason
// ReasonStopConfirmed) hand a member's dispatches back to the hub.
func retireDispatch(ctx context.Context, hub client.Client, d *fleet.JobSetDispatch, reason, message string, end *copyEnd) error {
	key := client.ObjectKeyFromObject(d)
	if !meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted) {
		patch := client.MergeFrom(d.DeepCopy())
		if end != nil && end.epoch == d.Spec.Epoch {
			d.Status.ObservedEpoch = end.epoch
			d.Status.JobSetStatus = end.status
		}
		meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{
			Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue, Reason: reason,
			Message:            fleet.Bounded(message, fleet.MaxConditionMessage),
			ObservedGeneration: d.Generation,
		})
		d.Status.LastSyncTime = ptrNow()
		if err := hub.Status().Patch(ctx, d, patch); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("marking dispatch %s deleted: %w", key, err)
		}
	}
	if d.DeletionTimestamp == nil {
		if err := hub.Delete(ctx, d, client.Preconditions{UID: &d.UID}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("deleting dispatch %s: %w", key, err)
		}
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &fleet.JobSetDispatch{}
		if err := hub.Get(ctx, key, cur); err != nil {
			return err
		}
		if cur.UID != d.UID || !controllerutil.ContainsFinalizer(cur, fleet.AgentFinalizer) {
			return nil
		}
		patch := client.MergeFromWithOptions(cur.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(cur, fleet.AgentFinalizer)
		return hub.Patch(ctx, cur, patch)
	})
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("releasing dispatch %s: %w", key, err)
	}
	return nil
}

// operator is who runs join or unjoin, as the hub knows them, for the
// record of what they stated.
func operator(ctx context.Context, hub client.Client) string {
	review := &authenticationv1.SelfSubjectReview{}
	if err := hub.Create(ctx, review); err != nil || review.Status.UserInfo.Username == "" {
		return "an operator"
	}
	return fmt.Sprintf("user %q", review.Status.UserInfo.Username)
}

var errNoMember = errors.New("a member client is required unless the copies are confirmed stopped")

func ptrNow() *metav1.Time {
	now := metav1.Now()
	return &now
}
