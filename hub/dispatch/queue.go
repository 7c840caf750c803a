package dispatch

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// QueueingStrategy orders the fleet queue's JobSets as Kueue's ClusterQueue
// queueingStrategy does.
type QueueingStrategy string

const (
	// BestEffortFIFO: a JobSet that does not fit does not hold back those
	// behind it, except that one waiting with a higher priority is never
	// overtaken for the capacity it needs (see Admit).
	BestEffortFIFO QueueingStrategy = "BestEffortFIFO"
	// StrictFIFO: the first JobSet in the queue blocks every one behind it
	// until it is placed.
	StrictFIFO QueueingStrategy = "StrictFIFO"
)

// ParseQueueingStrategy parses a --queueing-strategy value.
func ParseQueueingStrategy(s string) (QueueingStrategy, error) {
	switch q := QueueingStrategy(s); q {
	case BestEffortFIFO, StrictFIFO:
		return q, nil
	case "":
		return BestEffortFIFO, nil
	}
	return "", fmt.Errorf("unknown queueing strategy %q: want %s or %s", s, BestEffortFIFO, StrictFIFO)
}

// Pending is a JobSet in the fleet queue: not placed yet, or waiting to be
// placed again.
type Pending struct {
	JobSet *jobset.JobSet
	// Priority is the JobSet's (Priority).
	Priority int32
	// Excluded members are no candidates for it (the value says why).
	Excluded map[string]string
}

func (p Pending) key() string { return p.JobSet.Namespace + "/" + p.JobSet.Name }

// queueLess orders the queue: higher priority first, then earlier
// submission (creationTimestamp), then namespace/name, so that every
// reconcile sees the same order.
func queueLess(a, b Pending) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	at, bt := a.JobSet.CreationTimestamp, b.JobSet.CreationTimestamp
	if !at.Equal(&bt) {
		return at.Before(&bt)
	}
	return a.key() < b.key()
}

// Priority is a JobSet's priority as the scheduler would resolve its
// Pods': the value of the PriorityClass a pod template names, the
// globalDefault class's when it names none, 0 when there is none (or the
// named class does not exist: its Pods would be refused anyway). A JobSet
// whose replicated jobs name different classes gets the highest: the
// queue orders whole JobSets, which run as one gang.
func Priority(js *jobset.JobSet, classes []schedulingv1.PriorityClass) int32 {
	var dflt int32
	byName := make(map[string]int32, len(classes))
	for _, c := range classes {
		byName[c.Name] = c.Value
		if c.GlobalDefault {
			dflt = c.Value
		}
	}
	best, seen := int32(0), false
	for _, rj := range js.Spec.ReplicatedJobs {
		v := dflt
		if name := rj.Template.Spec.Template.Spec.PriorityClassName; name != "" {
			v = byName[name]
		}
		if !seen || v > best {
			best, seen = v, true
		}
	}
	return best
}

// Placer runs placement for one queued JobSet with reserved added to the
// hub's commitments per member. emptied asks instead where it could fit
// at all: every member as if nothing ran on it (free = allocatable, no
// commitments), its other filters as they are.
type Placer func(p Pending, reserved map[string]corev1.ResourceList, emptied bool) (placement.Result, error)

// Turn is where a queued JobSet stands.
type Turn struct {
	// Position is its place in the queue, from 1.
	Position int
	// Result is its placement given the JobSets ahead of it. Result.Cluster
	// set: it is its turn, and it goes there.
	Result placement.Result
	// Err is placement's error (a malformed annotation); such a JobSet
	// neither places nor holds anyone back.
	Err error
	// Behind is the first JobSet of a StrictFIFO queue, which does not fit
	// and holds back this one; placement did not run for it.
	Behind string
	// HeldFor are the higher-priority JobSets waiting ahead whose capacity
	// this one would take: without them it would fit (Unheld).
	HeldFor []string
	Unheld  placement.Result
	// explained is Result.Explain(), made once for the turns of alike
	// JobSets that share Result (walk.same).
	explained *string
}

// explain is Result.Explain(), once per shared Result.
func (t Turn) explain() string {
	if t.explained == nil {
		return t.Result.Explain()
	}
	if *t.explained == "" {
		*t.explained = t.Result.Explain()
	}
	return *t.explained
}

// Waiting reports whether the JobSet may not be placed now.
func (t Turn) Waiting() bool { return t.Result.Cluster == "" }

// Admit decides the turn of the JobSet with key target in queue: the
// queue is sorted (queueLess) and walked from its head, each JobSet ahead
// of target taking, in the walk, the member placement gives it, so that
// target gets only what those ahead leave, whichever reconcile runs first.
//
// StrictFIFO: once one JobSet does not fit, every one behind it waits.
//
// BestEffortFIFO: a JobSet that does not fit is skipped, but it holds,
// against every JobSet of lower priority behind it, its whole request on
// each member where it could fit if that member were empty (placement's
// other filters as they are): a lower-priority JobSet goes there only if
// it fits beside that request. As the waiting JobSet does not fit there
// now, that means a lower-priority JobSet goes only to members the waiting
// one can never use (too small, excluded, not selected, tainted against
// it): it takes only capacity the waiting one cannot use. JobSets of the
// same priority do not hold for each other (Kueue's BestEffortFIFO).
//
// ok is false when target is not in queue.
func Admit(queue []Pending, strategy QueueingStrategy, place Placer, target string) (turn Turn, ok bool) {
	w := newWalk(queue, strategy, place)
	i, ok := w.index[target]
	if !ok {
		return Turn{}, false
	}
	return w.turn(i), true
}

// walk is one walk of a sorted queue from its head (Admit). A JobSet's
// turn depends only on the JobSets ahead of it, so one walk, extended as
// far as asked, gives every JobSet of that queue its turn: N JobSets of
// one queue state cost N placements, not N²/2.
type walk struct {
	queue    []Pending
	index    map[string]int // key → place in queue
	strategy QueueingStrategy
	place    Placer
	// turns of queue[:len(turns)], walked so far.
	turns []Turn
	// reserved: what the JobSets walked so far took, per member.
	reserved map[string]corev1.ResourceList
	// holds of the JobSets walked so far that do not fit; unheld are
	// those whose holds are not computed yet: a JobSet's holds matter only
	// to JobSets of lower priority, so they are computed when the walk
	// reaches the first of those.
	holds   []hold
	unheld  []int
	blocker string
	// fits counts the JobSets walked so far that took capacity; a turn
	// that did not fit is reused (same) for a JobSet of the same shape
	// and priority while fits and holds stay as they were: placement
	// would read the same and say the same. A long queue of alike
	// JobSets costs a placement per shape, not per JobSet.
	fits   int
	same   map[shapeKey]sameTurn
	could  map[shapeKey]placement.Result
	shapes *shapeCache
}

// shapeKey is what placement reads of a queued JobSet but its identity.
type shapeKey struct {
	shape, excluded uint64
	priority        int32
}

type sameTurn struct {
	turn        Turn
	fits, holds int
}

// shapeCache keeps each queued JobSet's shape while its object does not
// change; walks of one queue pass it on.
type shapeCache struct {
	byUID map[types.UID]shapeOf
}

type shapeOf struct {
	resourceVersion string
	shape           uint64
}

// key is the shape of p: its namespace, labels, annotations and spec,
// with its priority and exclusions.
func (c *shapeCache) key(p Pending) shapeKey {
	js := p.JobSet
	k := shapeKey{excluded: pairsHash(p.Excluded), priority: p.Priority}
	if s, ok := c.byUID[js.UID]; ok && s.resourceVersion == js.ResourceVersion && js.ResourceVersion != "" {
		k.shape = s.shape
		return k
	}
	spec, _ := json.Marshal(&js.Spec)
	var h maphash.Hash
	h.SetSeed(queueSeed)
	h.WriteString(js.Namespace)
	h.WriteByte(0)
	h.Write(spec)
	k.shape = h.Sum64() + 31*pairsHash(js.Annotations) + 37*pairsHash(js.Labels)
	c.byUID[js.UID] = shapeOf{resourceVersion: js.ResourceVersion, shape: k.shape}
	return k
}

// prune forgets the JobSets no longer in queue.
func (c *shapeCache) prune(queue []Pending) {
	if len(c.byUID) <= 2*len(queue)+64 {
		return
	}
	live := make(map[types.UID]bool, len(queue))
	for _, p := range queue {
		live[p.JobSet.UID] = true
	}
	maps.DeleteFunc(c.byUID, func(uid types.UID, _ shapeOf) bool { return !live[uid] })
}

type hold struct {
	priority int32
	key      string
	member   string
	requests corev1.ResourceList
}

// newWalk sorts queue (in place) and starts its walk.
func newWalk(queue []Pending, strategy QueueingStrategy, place Placer) *walk {
	sort.SliceStable(queue, func(i, j int) bool { return queueLess(queue[i], queue[j]) })
	w := &walk{queue: queue, index: make(map[string]int, len(queue)), strategy: strategy, place: place, reserved: map[string]corev1.ResourceList{},
		same: map[shapeKey]sameTurn{}, could: map[shapeKey]placement.Result{}, shapes: &shapeCache{byUID: map[types.UID]shapeOf{}}}
	for i := range queue {
		w.index[queue[i].key()] = i
	}
	return w
}

// keepShapes takes over old's shape cache.
func (w *walk) keepShapes(old *walk) {
	w.shapes = old.shapes
	w.shapes.prune(w.queue)
}

// turn walks the queue up to queue[last] and returns its turn.
func (w *walk) turn(last int) Turn {
	for i := len(w.turns); i <= last; i++ {
		w.turns = append(w.turns, w.step(i))
	}
	return w.turns[last]
}

// resume takes over what old walked, if old's queue up to there is this
// walk's too (the same JobSets as placement reads them, in the same
// order) and old placed with the same members and commitments (the
// caller's to know): JobSets that joined or left behind that point do
// not change the turns ahead of them.
func (w *walk) resume(old *walk) {
	n := len(old.turns)
	if n > len(w.queue) || w.strategy != old.strategy {
		return
	}
	var h maphash.Hash
	h.SetSeed(queueSeed)
	for i := range n {
		if w.queue[i].key() != old.queue[i].key() || entryHash(&h, w.queue[i]) != entryHash(&h, old.queue[i]) {
			return
		}
	}
	w.turns = slices.Clone(old.turns)
	w.reserved = cloneReserved(old.reserved)
	w.holds = slices.Clone(old.holds)
	w.unheld = slices.Clone(old.unheld)
	w.blocker = old.blocker
	w.fits = old.fits
}

// step decides queue[i]'s turn, every JobSet ahead of it walked.
func (w *walk) step(i int) Turn {
	e := w.queue[i]
	t := Turn{Position: i + 1}
	if w.strategy == StrictFIFO && w.blocker != "" {
		t.Behind = w.blocker
		return t
	}
	w.computeHolds(e.Priority)
	key := w.shapes.key(e)
	if s, ok := w.same[key]; ok && s.fits == w.fits && s.holds == len(w.holds) {
		t.Result, t.Err, t.HeldFor, t.Unheld, t.explained = s.turn.Result, s.turn.Err, s.turn.HeldFor, s.turn.Unheld, s.turn.explained
		w.waits(i, t)
		return t
	}
	withHolds := cloneReserved(w.reserved)
	var heldFor []string
	for _, h := range w.holds {
		if h.priority > e.Priority {
			addReserved(withHolds, h.member, h.requests)
			if !slices.Contains(heldFor, h.key) {
				heldFor = append(heldFor, h.key)
			}
		}
	}
	res, err := w.place(e, withHolds, false)
	t.Result, t.Err = res, err
	if err == nil && res.Cluster != "" {
		addReserved(w.reserved, res.Cluster, res.Requests)
		w.fits++
		return t
	}
	if err == nil && len(heldFor) > 0 {
		if unheld, err := w.place(e, w.reserved, false); err == nil && unheld.Cluster != "" {
			t.HeldFor, t.Unheld = heldFor, unheld
		}
	}
	t.explained = new(string)
	w.same[key] = sameTurn{turn: t, fits: w.fits, holds: len(w.holds)}
	w.waits(i, t)
	return t
}

// waits notes that queue[i] does not fit (t): it blocks a StrictFIFO
// queue, and holds capacity against lower priorities in a BestEffortFIFO
// one.
func (w *walk) waits(i int, t Turn) {
	switch {
	case t.Err != nil:
	case w.strategy == StrictFIFO:
		w.blocker = w.queue[i].key()
	default:
		w.unheld = append(w.unheld, i)
	}
}

// computeHolds computes the holds of the JobSets walked so far, that do
// not fit and have a higher priority than priority, whose holds are not
// computed yet: each where it could fit on an emptied member.
func (w *walk) computeHolds(priority int32) {
	// The queue is walked in priority order, so unheld[0] has the highest
	// priority of them: while it is not higher than priority, nothing is
	// to compute (a queue of one priority walks in linear time).
	if len(w.unheld) == 0 || w.queue[w.unheld[0]].Priority <= priority {
		return
	}
	keep := w.unheld[:0]
	for _, j := range w.unheld {
		e := w.queue[j]
		if e.Priority <= priority {
			keep = append(keep, j)
			continue
		}
		key := w.shapes.key(e)
		could, ok := w.could[key]
		var err error
		if !ok {
			// Emptied members: what the walk reserved does not matter.
			could, err = w.place(e, nil, true)
			if err == nil {
				w.could[key] = could
			}
		}
		if err == nil {
			for _, v := range could.Verdicts {
				if v.Fits {
					w.holds = append(w.holds, hold{priority: e.Priority, key: e.key(), member: v.Cluster, requests: w.turns[j].Result.Requests})
				}
			}
		}
	}
	w.unheld = keep
}

func cloneReserved(in map[string]corev1.ResourceList) map[string]corev1.ResourceList {
	out := make(map[string]corev1.ResourceList, len(in))
	for m, l := range in {
		out[m] = l.DeepCopy()
	}
	return out
}

func addReserved(r map[string]corev1.ResourceList, member string, l corev1.ResourceList) {
	if r[member] == nil {
		r[member] = corev1.ResourceList{}
	}
	placement.AddTo(r[member], l)
}

// queuedMessage is the Dispatched=False message of a waiting JobSet:
// "Queued: 3rd; <what it waits for>", "Queued: within the first 100; …".
func queuedMessage(t Turn, strategy QueueingStrategy) (reason, msg string) {
	head := "Queued: " + queuePlace(t.Position) + "; "
	switch {
	case t.Behind != "":
		return fleet.ReasonQueued, head + fmt.Sprintf("waits behind %s, first in the queue, which does not fit (queueing strategy %s)", t.Behind, strategy)
	case len(t.HeldFor) > 0:
		return fleet.ReasonQueued, head + fmt.Sprintf("the capacity it would take is held for %d higher-priority JobSet(s) waiting ahead of it (%s); without them it would fit on %s",
			len(t.HeldFor), strings.Join(firstN(t.HeldFor, 3), ", "), t.Unheld.Cluster)
	}
	return fleet.ReasonNoFit, head + "no member cluster fits: " + t.explain()
}

// exactPlaces are the queue positions stated exactly; behind them a
// waiting JobSet's place is stated by the power of ten it is within.
const exactPlaces = 3

// queuePlace is where a JobSet stands as its condition says it: exactly
// at the head ("2nd"), coarsely behind it ("within the first 100"). Every
// placement from the queue moves every JobSet behind it up one place; the
// condition is rewritten only when what it says changes, so a placement
// rewrites the few JobSets at the head and those crossing a power of ten,
// not the whole queue (which is also why the queue's length is not said).
func queuePlace(position int) string {
	if position <= exactPlaces {
		return ordinal(position)
	}
	band := 10
	for band < position {
		band *= 10
	}
	return fmt.Sprintf("within the first %d", band)
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

var (
	// queueHead also matches the head of messages of earlier hubs
	// ("Queued: 412th of 5000; "), whose queue length is dropped.
	queueHead  = regexp.MustCompile(`^Queued: ([^;]*?)(?: of \d+)?; `)
	liveNumber = regexp.MustCompile(`(^|[^\w.-])[0-9]+(\.[0-9]+)?[a-zA-Z%]*`)
)

// waitSignature is what a waiting JobSet's message says, without the live
// numbers that churn while nothing that matters changes (free amounts,
// percentages); its place in the queue stays (queuePlace keeps that
// coarse). A waiting JobSet's condition is rewritten only when its reason
// or signature changes, so an idle fleet writes nothing.
func waitSignature(reason, msg string) string {
	head, rest := "", msg
	if m := queueHead.FindStringSubmatchIndex(msg); m != nil {
		head, rest = msg[m[2]:m[3]], msg[m[1]:]
	}
	return reason + "|" + head + "|" + liveNumber.ReplaceAllString(rest, "${1}#")
}

// waitUnchanged reports whether a Dispatched condition c already says what
// a waiting JobSet would be told (reason, msg) but for live numbers: then
// nothing is written.
func waitUnchanged(c *metav1.Condition, reason, msg string) bool {
	return c != nil && c.Status == metav1.ConditionFalse &&
		((c.Reason == reason && c.Message == msg) || waitSignature(c.Reason, c.Message) == waitSignature(reason, msg))
}

// suspended reports whether the JobSet is suspended on the hub.
func suspended(js *jobset.JobSet) bool { return ptr.Deref(js.Spec.Suspend, false) }
