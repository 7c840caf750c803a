package dispatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Kueue on the hub decides when a JobSet may run, the fleet where. Kueue's
// JobSet integration suspends, at creation, every JobSet that names a
// LocalQueue; it unsuspends the JobSet when its ClusterQueue admits it,
// merging the flavor's node labels and tolerations into the pod templates;
// it suspends it again to preempt it, and counts its quota as released once
// no replicated Job is active; it sees completion in the JobSet's
// conditions. The hub mirrors the member's status (active counts,
// conditions), so all of these work on a hub JobSet. Kueue's integration
// reconciles JobSets whatever their spec.managedBy (only its MultiKueue
// defaulting looks at the field, and leaves a set value alone), so the
// fleet's managedBy stays.

// heldByQueue reports the LocalQueue of a JobSet that names one and is
// suspended while Kueue runs on the hub (kueueOnHub): the queue holds it
// until admission, and the hub does not place it. A JobSet without a queue
// that its user suspends is placed and held suspended on its member, as
// before: the user chose to stage it, and resuming it then starts it where
// it was placed, at once. So is a queue-named one on a hub without Kueue:
// its queue is a member's (Kueue on the members, docs/kueue-members.md).
func heldByQueue(js *jobset.JobSet, kueueOnHub bool) (string, bool) {
	q := js.Labels[fleet.KueueQueueNameLabel]
	return q, kueueOnHub && q != "" && suspended(js)
}

// kueueGroup is Kueue's API group; the hub runs Kueue when it serves it.
const kueueGroup = "kueue.x-k8s.io"

// kueueOnHubInterval is how often the hub looks again whether it serves
// Kueue's API (Kueue installed or removed while the hub runs).
const kueueOnHubInterval = 30 * time.Second

// kueueOnHub tells whether the hub cluster serves Kueue's API, and so
// whether a suspended queue-named JobSet waits for Kueue's admission on
// the hub or for its member's queue.
type kueueOnHub struct {
	served atomic.Bool
	check  func() (bool, error)
}

// newKueueOnHub looks once, before any reconcile: a JobSet Kueue holds
// must never be placed because the hub had not looked yet. When the hub
// cannot tell, it assumes Kueue runs (holding is the safe side: a JobSet
// waits rather than runs before admission).
func newKueueOnHub(cfg *rest.Config) (*kueueOnHub, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	k := &kueueOnHub{check: func() (bool, error) {
		groups, err := dc.ServerGroups()
		if err != nil {
			return true, err
		}
		for _, g := range groups.Groups {
			if g.Name == kueueGroup {
				return true, nil
			}
		}
		return false, nil
	}}
	served, _ := k.check()
	k.served.Store(served)
	return k, nil
}

// Served reports the last answer.
func (k *kueueOnHub) Served() bool { return k.served.Load() }

// Start looks again every kueueOnHubInterval until ctx ends.
func (k *kueueOnHub) Start(ctx context.Context) error {
	t := time.NewTicker(kueueOnHubInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		served, err := k.check()
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Looking whether the hub serves Kueue's API; assuming it does")
		}
		if k.served.Swap(served) != served {
			ctrl.LoggerFrom(ctx).Info("Kueue on the hub changed", "served", served)
		}
	}
}

// NeedLeaderElection: every replica answers for its own reconciles.
func (k *kueueOnHub) NeedLeaderElection() bool { return false }

// awaitingAdmissionMessage says what a held JobSet waits for.
func awaitingAdmissionMessage(queue string) string {
	return fmt.Sprintf("suspended by Kueue until LocalQueue %s admits it: it is placed on a member once admitted", queue)
}
