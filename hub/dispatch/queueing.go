package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// The fleet queue as the reconciler keeps it. The queue is not a second
// store: it is read from the cache (JobSets with no recorded placement)
// each time a JobSet asks for a member, under the placement lock, and
// Admit decides whose turn it is. Waiting JobSets are re-evaluated only
// when something that could let them fit happened: a member change that
// could (affectedBy), a JobSet leaving the queue, or a commitment released
// (kick); and then only those whose turn came or whose condition would
// say something else (waitingJobSets).

// inQueue reports whether a hub JobSet waits for a member: no recorded
// placement, alive and unfinished, and not held by a Kueue queue (until
// admitted it asks for no member, and takes no turn).
func inQueue(js *jobset.JobSet, kueueOnHub bool) bool {
	_, held := heldByQueue(js, kueueOnHub)
	return ptr.Deref(js.Spec.ManagedBy, "") == fleet.ManagedByFleet && js.DeletionTimestamp == nil &&
		!IsFinished(&js.Status) && fleetOf(&js.Status).Cluster == "" && !held
}

func withdrawnFromMember(fs jobset.FleetStatus, member string) bool {
	for _, w := range fs.Withdrawals {
		if w.Cluster == member {
			return true
		}
	}
	return false
}

// chooser runs placement with the hub's commitments (what it dispatched
// that members do not report yet, and how many JobSets each runs) in the
// fleet queue's order.
func (r *Reconciler) chooser(ctx context.Context, o *Observed, members []inventory.Member) Chooser {
	return func(excluded map[string]string) (Choice, error) {
		queue, err := r.queue(ctx, o, excluded, o.Members)
		if err != nil {
			return Choice{}, err
		}
		w, place, err := r.walkQueue(ctx, queue, members, o.JobSet.UID)
		if err != nil {
			return Choice{}, err
		}
		i, ok := w.index[o.JobSet.Namespace+"/"+o.JobSet.Name]
		if !ok {
			res, err := place(Pending{JobSet: o.JobSet, Excluded: excluded}, nil, false)
			return Choice{Result: res}, err
		}
		turn := w.turn(i)
		if turn.Err != nil {
			return Choice{}, turn.Err
		}
		return Choice{Result: turn.Result, Queue: &turn}, nil
	}
}

// walkQueue returns the walk of queue against the members and the hub's
// commitments (but placing's), and the placer it walks with. Under the
// placement lock. One walk serves every JobSet asking while the queue's
// state stays the same: a kick re-evaluating N waiting JobSets costs N
// placements, not N²/2.
func (r *Reconciler) walkQueue(ctx context.Context, queue []Pending, members []inventory.Member, placing types.UID) (*walk, Placer, error) {
	all := &fleet.JobSetDispatchList{}
	// Read-only and under the placement lock: no copy of every dispatch.
	if err := r.client.List(ctx, all, client.UnsafeDisableDeepCopy); err != nil {
		return nil, nil, fmt.Errorf("listing dispatches for commitments: %w", err)
	}
	committed, load, queueDemand := r.ledger.committed(all.Items, members, placing)
	place := func(p Pending, reserved map[string]corev1.ResourceList, emptied bool) (placement.Result, error) {
		req := placement.Request{
			JobSet: p.JobSet, Members: members, Excluded: p.Excluded, Policy: r.opts.Policy,
			DeniedNamespaces: r.opts.DeniedNamespaces, QueueDemand: queueDemand,
		}
		if emptied {
			req.Members = emptiedMembers(members)
			return placement.Place(req)
		}
		req.Committed = cloneReserved(committed)
		req.Load = make(map[string]int, len(load))
		for m, n := range load {
			req.Load[m] = n
		}
		for m, l := range reserved {
			addReserved(req.Committed, m, l)
			req.Load[m]++
		}
		return placement.Place(req)
	}
	state := fingerprintQueue(queue, members, committed, load, queueDemand)
	if r.walk == nil || r.walkState != state {
		next := newWalk(queue, r.opts.QueueingStrategy, place)
		if r.walk != nil {
			next.keepShapes(r.walk)
		}
		if r.walk != nil && r.walkState.members == state.members && r.walkState.committed == state.committed {
			// Only JobSets changed: what was walked still holds if
			// they joined or left behind it (a new JobSet of the same
			// priority queues last).
			next.resume(r.walk)
		}
		r.walk, r.walkState = next, state
	}
	return r.walk, place, nil
}

// queue is the fleet queue as the cache has it, with the JobSet o asking
// (none when o is nil).
func (r *Reconciler) queue(ctx context.Context, o *Observed, excluded map[string]string, members map[string]inventory.Member) ([]Pending, error) {
	classes := &schedulingv1.PriorityClassList{}
	if err := r.client.List(ctx, classes); err != nil {
		return nil, fmt.Errorf("listing PriorityClasses: %w", err)
	}
	list := &jobset.JobSetList{}
	if err := r.client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing JobSets for the queue: %w", err)
	}
	onHub := r.kueueOnHub() // one answer for the whole queue
	var queue []Pending
	var self types.UID
	if o != nil {
		self = o.JobSet.UID
		delete(r.placed, self) // it asks for a member: it waits, whatever was placed before
		queue = append(queue, Pending{JobSet: o.JobSet, Priority: Priority(o.JobSet, classes.Items), Excluded: excluded})
	}
	for i := range list.Items {
		js := &list.Items[i]
		if epoch, ok := r.placed[js.UID]; ok && fleetOf(&js.Status).Epoch >= epoch {
			delete(r.placed, js.UID) // the cache shows the placement
		}
		if (self != "" && js.UID == self) || !inQueue(js, onHub) || fleet.NamespaceDenied(js.Namespace, r.opts.DeniedNamespaces) {
			continue
		}
		if _, lagging := r.placed[js.UID]; lagging {
			continue // placed by this process; the cache does not show it yet
		}
		queue = append(queue, Pending{JobSet: js, Priority: Priority(js, classes.Items), Excluded: withdrawnExclusions(fleetOf(&js.Status), members)})
	}
	return queue, nil
}

// emptiedMembers are the members as if nothing ran on them: what a JobSet
// could use there once everything else left.
func emptiedMembers(members []inventory.Member) []inventory.Member {
	out := make([]inventory.Member, len(members))
	for i, m := range members {
		m.Free = m.Allocatable.DeepCopy()
		m.FleetUsed = nil
		if m.Nodes != nil {
			// Every node as free as the group's largest: an upper bound,
			// so a waiting JobSet holds capacity wherever it might fit.
			nodes := m.Nodes.DeepCopy()
			for g := range nodes.Groups {
				grp := &nodes.Groups[g]
				grp.Free = []fleet.FreeNodes{{Count: grp.Nodes, Free: grp.Allocatable.DeepCopy()}}
			}
			m.Nodes = nodes
		}
		out[i] = m
	}
	return out
}

// kick re-evaluates the waiting JobSets (waitingJobSets). Kicks coalesce:
// the JobSets are listed when the kick is handled.
func (r *Reconciler) kick() {
	select {
	case r.kicks <- event.GenericEvent{Object: &jobset.JobSet{}}:
	default:
	}
}

// waitingJobSets are the JobSets of the queue, evaluated and waiting,
// whose reconcile would now do something: those whose turn came (the walk
// places them) and those whose Dispatched condition would say something
// else (another reason, place or verdict; waitUnchanged), in queue order:
// the head, which freed capacity is most likely for, first. One walk of
// the queue decides it, and their reconciles share it; the others are
// left alone: a placement from the queue no longer re-evaluates every
// JobSet behind it. When the walk cannot be made, every waiting JobSet is
// re-evaluated.
func (r *Reconciler) waitingJobSets(ctx context.Context, _ client.Object) []reconcile.Request {
	log := ctrl.LoggerFrom(ctx)
	members, err := r.inventory.Members(ctx)
	if err != nil {
		log.Error(err, "Reading members to walk the queue")
	}
	byName := make(map[string]inventory.Member, len(members))
	for _, m := range members {
		byName[m.Name] = m
	}
	r.placing.Lock()
	defer r.placing.Unlock()
	queue, qerr := r.queue(ctx, nil, nil, byName)
	if qerr != nil {
		log.Error(qerr, "Listing the queue after capacity was freed")
		return nil
	}
	var w *walk
	if err == nil {
		if w, _, err = r.walkQueue(ctx, queue, members, ""); err != nil {
			log.Error(err, "Walking the queue after capacity was freed")
		}
	}
	if w == nil {
		w = newWalk(queue, r.opts.QueueingStrategy, nil) // only sorted
	}
	var reqs []reconcile.Request
	for i, p := range w.queue {
		c := meta.FindStatusCondition(p.JobSet.Status.Conditions, fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse {
			continue // not evaluated yet: its own event brings it
		}
		if w.place != nil {
			t := w.turn(i)
			if t.Err == nil && t.Waiting() {
				reason, msg := queuedMessage(t, r.opts.QueueingStrategy)
				if waitUnchanged(c, reason, fleet.Bounded(msg, fleet.MaxConditionMessage)) {
					continue
				}
			}
		}
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p.JobSet)})
	}
	return reqs
}

// memberView is what of a member can let a waiting JobSet fit.
type memberView struct {
	// filters are the member's properties other than capacity that
	// placement filters on.
	filters string
	// nodes is the member's node summary as reported: nodes freed, taints
	// lifted or labels changed may let a JobSet fit where the sums did not
	// move.
	nodes       string
	allocatable corev1.ResourceList
	free        corev1.ResourceList
	capacity    string
}

func viewOf(m inventory.Member) memberView {
	return memberView{
		filters: fmt.Sprint(m.Healthy, m.HeartbeatFresh, m.OutOfService, m.Labels, m.AllowedNamespaces, m.TopologyDomains, m.StorageClasses),
		nodes:   nodesOf(m),
		// DeepCopy: the views outlive the member's assessment.
		allocatable: m.Allocatable.DeepCopy(), free: m.Free.DeepCopy(), capacity: capacityFingerprint(m),
	}
}

// couldLetFit reports whether a member that was prev and is now cur could
// fit a JobSet it did not: it is new, a filter or its nodes changed, or it
// reports more of some resource. Less capacity fits nothing new.
func couldLetFit(prev, cur memberView, known bool) bool {
	if !known || prev.filters != cur.filters || prev.nodes != cur.nodes {
		return true
	}
	return grew(prev.allocatable, cur.allocatable) || grew(prev.free, cur.free)
}

func grew(prev, cur corev1.ResourceList) bool {
	for name, q := range cur {
		p, ok := prev[name]
		if !ok || q.Cmp(p) > 0 {
			return true
		}
	}
	return false
}

// noteMember records the member's current view and says whether its change
// could let a waiting JobSet fit, and whether its capacity changed at all
// (which ends a withdrawal's exclusion).
func (r *Reconciler) noteMember(ctx context.Context, name string) (couldFit, capacityChanged bool) {
	members, err := r.inventory.Members(ctx)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Reading members for a member change", "member", name)
		return true, true
	}
	r.membersMu.Lock()
	defer r.membersMu.Unlock()
	for _, m := range members {
		if m.Name != name {
			continue
		}
		cur := viewOf(m)
		prev, known := r.members[name]
		r.members[name] = cur
		return couldLetFit(prev, cur, known), !known || prev.capacity != cur.capacity
	}
	delete(r.members, name)
	return false, false
}

// nodesOf is the member's node summary in a comparable form ("" for none;
// json.Marshal sorts map keys).
func nodesOf(m inventory.Member) string {
	if m.Nodes == nil {
		return ""
	}
	raw, _ := json.Marshal(m.Nodes)
	return string(raw)
}

// queueState fingerprints what a walk of the queue reads: the queue's
// JobSets (what placement reads of each: identity, spec generation,
// annotations; its priority, creation time and exclusions), the members
// as assessed (each from its ClusterProfile's version and its heartbeat's
// verdict), and the hub's commitments per member and per member queue.
// Status writes of the waiting JobSets do not change it.
type queueState struct {
	n                  int
	sum, xor           uint64
	members, committed string
}

var queueSeed = maphash.MakeSeed()

func fingerprintQueue(queue []Pending, members []inventory.Member, committed map[string]corev1.ResourceList, load map[string]int, queueDemand map[string]map[string]corev1.ResourceList) queueState {
	st := queueState{n: len(queue)}
	var h maphash.Hash
	h.SetSeed(queueSeed)
	for _, p := range queue {
		e := entryHash(&h, p)
		st.sum += e
		st.xor ^= e * 0x9e3779b97f4a7c15
	}
	var b []byte
	for _, m := range members {
		b = append(b, m.Name...)
		if m.Profile != nil {
			b = append(b, "|"+m.Profile.ResourceVersion...)
		} else {
			b = fmt.Appendf(b, "|%v", m)
		}
		b = fmt.Appendf(b, "|%t|%t|%s;", m.Healthy, m.HeartbeatFresh, m.Reason)
	}
	st.members = string(b)
	b = b[:0]
	appendResources := func(b []byte, l corev1.ResourceList) []byte {
		for _, r := range slices.Sorted(maps.Keys(l)) {
			q := l[r]
			b = append(b, string(r)+"="+q.String()+","...)
		}
		return append(b, ';')
	}
	for _, name := range slices.Sorted(maps.Keys(committed)) {
		b = append(b, name+":"...)
		b = appendResources(b, committed[name])
	}
	for _, name := range slices.Sorted(maps.Keys(queueDemand)) {
		for _, q := range slices.Sorted(maps.Keys(queueDemand[name])) {
			b = append(b, name+"@"+q+":"...)
			b = appendResources(b, queueDemand[name][q])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(load)) {
		b = append(b, name+"#"+strconv.Itoa(load[name])+";"...)
	}
	st.committed = string(b)
	return st
}

// entryHash hashes what placement reads of a queued JobSet.
func entryHash(h *maphash.Hash, p Pending) uint64 {
	js := p.JobSet
	h.Reset()
	h.WriteString(string(js.UID))
	h.WriteString(js.Namespace + "/" + js.Name)
	h.WriteString(strconv.FormatInt(js.Generation, 10) + "|" + strconv.FormatInt(int64(p.Priority), 10) + "|" + strconv.FormatInt(js.CreationTimestamp.UnixNano(), 10))
	// Maps hash in any order: each pair's hash is summed.
	return h.Sum64() + 31*pairsHash(js.Annotations) + 37*pairsHash(p.Excluded)
}

func pairsHash(m map[string]string) uint64 {
	var sum uint64
	for k, v := range m {
		sum += maphash.String(queueSeed, k+"\x00"+v)
	}
	return sum
}
