package dispatch

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// ledger remembers the dispatches this process made, with the exact time,
// because the cache may not show a dispatch right after its creation and a
// burst of placements must still see each other.
type ledger struct {
	mu      sync.Mutex
	entries map[types.UID]commitment
}

type commitment struct {
	member    string
	epoch     int64
	resources corev1.ResourceList
	at        time.Time
}

func (l *ledger) put(uid types.UID, c commitment) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries == nil {
		l.entries = map[types.UID]commitment{}
	}
	l.entries[uid] = c
}

func (l *ledger) forget(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, uid)
}

// committed computes, per member, the resources of live, unfinished
// dispatches made after the member last reported its free resources, except
// those of the JobSet being placed.
func (l *ledger) committed(dispatches []fleet.JobSetDispatch, members []inventory.Member, placing types.UID) map[string]corev1.ResourceList {
	l.mu.Lock()
	defer l.mu.Unlock()
	observed := map[string]time.Time{}
	for _, m := range members {
		observed[m.Name] = m.PropertiesObserved
	}
	out := map[string]corev1.ResourceList{}
	add := func(member string, at time.Time, res corev1.ResourceList) {
		obs, ok := observed[member]
		if !ok || !at.After(obs) {
			return
		}
		if out[member] == nil {
			out[member] = corev1.ResourceList{}
		}
		placement.AddTo(out[member], res)
	}
	seen := map[types.UID]bool{}
	for i := range dispatches {
		d := &dispatches[i]
		uid, member, at := d.Spec.Origin.UID, MemberOf(d), d.CreationTimestamp.Time
		if e, ok := l.entries[uid]; ok && e.member == member && e.epoch == d.Spec.Epoch {
			// The cache caught up: count the dispatch once, at our exact time.
			at = e.at
			seen[uid] = true
		}
		if uid == placing || d.DeletionTimestamp != nil || d.Status.JobSetStatus.TerminalState != "" {
			continue
		}
		add(member, at, placement.Requests(&d.Spec.JobSet.Spec))
	}
	for uid, e := range l.entries {
		if uid != placing && !seen[uid] {
			add(e.member, e.at, e.resources)
		}
	}
	return out
}
