package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
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

// kueueRecheckAfter bounds how old a "not served" answer may be when a
// suspended queue-named JobSet asks: Kueue's webhook may have suspended it
// after Kueue was installed on a running hub, and such a JobSet must wait
// for admission from the first reconcile, not from the next periodic look.
const kueueRecheckAfter = time.Second

// kueueOnHub tells whether the hub cluster serves Kueue's API, and so
// whether a suspended queue-named JobSet waits for Kueue's admission on
// the hub or for its member's queue.
type kueueOnHub struct {
	clock clock.PassiveClock
	check func() (bool, error)

	// mu serializes looks, so that concurrent reconciles asking at once
	// cause one request.
	mu        sync.Mutex
	served    bool
	checkedAt time.Time
}

// newKueueOnHub looks once, before any reconcile: a JobSet Kueue holds
// must never be placed because the hub had not looked yet.
func newKueueOnHub(cfg *rest.Config, clk clock.PassiveClock) (*kueueOnHub, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	k := newKueueOnHubWith(clk, func() (bool, error) {
		groups, err := dc.ServerGroups()
		if err != nil {
			return false, err
		}
		for _, g := range groups.Groups {
			if g.Name == kueueGroup {
				return true, nil
			}
		}
		return false, nil
	})
	k.look(context.Background())
	return k, nil
}

func newKueueOnHubWith(clk clock.PassiveClock, check func() (bool, error)) *kueueOnHub {
	// Until the first look answers, assume Kueue runs: holding is the safe
	// side (a JobSet waits rather than runs before admission).
	return &kueueOnHub{clock: clk, check: check, served: true}
}

// look asks the apiserver; when it cannot tell, the last answer stays.
func (k *kueueOnHub) look(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lookLocked(ctx)
}

func (k *kueueOnHub) lookLocked(ctx context.Context) {
	served, err := k.check()
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Looking whether the hub serves Kueue's API; keeping the last answer", "served", k.served)
		return
	}
	k.checkedAt = k.clock.Now()
	if served != k.served {
		ctrl.LoggerFrom(ctx).Info("Kueue on the hub changed", "served", served)
	}
	k.served = served
}

// Served reports the last answer.
func (k *kueueOnHub) Served() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.served
}

// ServedFor answers for js: for a suspended JobSet that names a queue, a
// "not served" older than kueueRecheckAfter is looked at again first.
func (k *kueueOnHub) ServedFor(ctx context.Context, js *jobset.JobSet) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.served && js != nil && js.Labels[fleet.KueueQueueNameLabel] != "" && suspended(js) &&
		k.clock.Since(k.checkedAt) >= kueueRecheckAfter {
		k.lookLocked(ctx)
	}
	return k.served
}

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
		k.look(ctx)
	}
}

// NeedLeaderElection: every replica answers for its own reconciles.
func (k *kueueOnHub) NeedLeaderElection() bool { return false }

// awaitingAdmissionMessage says what a held JobSet waits for.
func awaitingAdmissionMessage(queue string) string {
	return fmt.Sprintf("suspended by Kueue until LocalQueue %s admits it: it is placed on a member once admitted", queue)
}
