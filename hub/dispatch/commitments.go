package dispatch

import (
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// ledger remembers the dispatches this process made until the cache shows
// them: right after a create the cache may not, and a burst of placements
// must still see each other.
type ledger struct {
	mu      sync.Mutex
	entries map[types.UID]commitment
	// requests caches each dispatch's requests by its UID, for the
	// generation they were computed at: committed reads every dispatch on
	// every placement, and its pod templates change only with its spec.
	requests map[types.UID]cachedRequests
}

type cachedRequests struct {
	generation int64
	requests   corev1.ResourceList
}

type commitment struct {
	member    string
	epoch     int64
	resources corev1.ResourceList
	// queue is the member LocalQueue the copy names (queueOf), or "".
	queue string
}

// queueOf is the member LocalQueue a dispatch's copy names,
// "namespace/name" (the copy lives in its origin's namespace), or "".
func queueOf(d *fleet.JobSetDispatch) string {
	q := d.Spec.JobSet.Labels[fleet.KueueQueueNameLabel]
	if q == "" {
		return ""
	}
	return d.Spec.Origin.Namespace + "/" + q
}

// awaitsMemberQueue reports whether a dispatch's copy is demand its
// member's Kueue quotas do not show yet: not reported at its epoch, or
// waiting in the member's queue. Once admitted it is in the quotas.
func awaitsMemberQueue(d *fleet.JobSetDispatch) bool {
	return d.Status.ObservedEpoch != d.Spec.Epoch || d.Status.Queued != nil
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

// requestsOf is placement.Requests of the dispatch's JobSet, cached (under
// l.mu). The cached list is only read (placement.AddTo copies from it).
func (l *ledger) requestsOf(d *fleet.JobSetDispatch) corev1.ResourceList {
	if c, ok := l.requests[d.UID]; ok && c.generation == d.Generation && d.Generation != 0 {
		return c.requests
	}
	r := placement.Requests(&d.Spec.JobSet.Spec)
	if l.requests == nil {
		l.requests = map[types.UID]cachedRequests{}
	}
	l.requests[d.UID] = cachedRequests{generation: d.Generation, requests: r}
	return r
}

// committed computes, per member, what the hub has committed there beyond
// what the member's free resources already reflect: the requests of every
// live, unfinished dispatch (but the JobSet being placed), minus what the
// member reports its fleet pods use (fleet-used.<r>). Counting whole
// dispatches against fleet pods, rather than guessing from report times,
// keeps a burst honest while its pods do not exist yet. load counts those
// dispatches per member. dispatches may be shared with the cache: they are
// only read.
//
// queueDemand is, per member and LocalQueue, the requests of the copies
// that name one and that the member's Kueue quotas do not show yet
// (awaitsMemberQueue; placement.Request.QueueDemand).
func (l *ledger) committed(dispatches []fleet.JobSetDispatch, members []inventory.Member, placing types.UID) (committed map[string]corev1.ResourceList, load map[string]int, queueDemand map[string]map[string]corev1.ResourceList) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]corev1.ResourceList{}
	load = map[string]int{}
	queueDemand = map[string]map[string]corev1.ResourceList{}
	demand := func(member, queue string, res corev1.ResourceList) {
		if queue == "" {
			return
		}
		if queueDemand[member] == nil {
			queueDemand[member] = map[string]corev1.ResourceList{}
		}
		if queueDemand[member][queue] == nil {
			queueDemand[member][queue] = corev1.ResourceList{}
		}
		placement.AddTo(queueDemand[member][queue], res)
	}
	add := func(member string, res corev1.ResourceList) {
		load[member]++
		if out[member] == nil {
			out[member] = corev1.ResourceList{}
		}
		placement.AddTo(out[member], res)
	}
	for i := range dispatches {
		d := &dispatches[i]
		uid, member := d.Spec.Origin.UID, memberOf(d)
		if e, ok := l.entries[uid]; ok && e.member == member && e.epoch == d.Spec.Epoch {
			delete(l.entries, uid) // the cache caught up: it counts from now on
		}
		if uid == placing || d.DeletionTimestamp != nil || d.Status.JobSetStatus.TerminalState != "" {
			continue
		}
		res := l.requestsOf(d)
		add(member, res)
		if awaitsMemberQueue(d) {
			demand(member, queueOf(d), res)
		}
	}
	if len(l.requests) > 2*len(dispatches)+64 {
		// Forget the dispatches that are gone.
		live := make(map[types.UID]bool, len(dispatches))
		for i := range dispatches {
			live[dispatches[i].UID] = true
		}
		maps.DeleteFunc(l.requests, func(uid types.UID, _ cachedRequests) bool { return !live[uid] })
	}
	for uid, e := range l.entries {
		if uid != placing {
			add(e.member, e.resources)
			demand(e.member, e.queue, e.resources)
		}
	}
	for _, m := range members {
		c := out[m.Name]
		for name, used := range m.FleetUsed {
			q, ok := c[name]
			if !ok {
				continue
			}
			q.Sub(used)
			if q.Sign() < 0 {
				q.Set(0)
			}
			c[name] = q
		}
	}
	return out, load, queueDemand
}
