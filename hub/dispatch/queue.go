package dispatch

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
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
	// Position is its place in the queue, from 1; Of the queue's length.
	Position, Of int
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
	sort.SliceStable(queue, func(i, j int) bool { return queueLess(queue[i], queue[j]) })
	last := -1
	for i := range queue {
		if queue[i].key() == target {
			last = i
			break
		}
	}
	if last < 0 {
		return Turn{}, false
	}
	type hold struct {
		priority int32
		key      string
		member   string
		requests corev1.ResourceList
	}
	reserved := map[string]corev1.ResourceList{}
	var holds []hold
	blocker := ""
	for i, e := range queue[:last+1] {
		t := Turn{Position: i + 1, Of: len(queue)}
		isTarget := i == last
		if strategy == StrictFIFO && blocker != "" {
			if isTarget {
				t.Behind = blocker
				return t, true
			}
			continue
		}
		withHolds := cloneReserved(reserved)
		var heldFor []string
		for _, h := range holds {
			if h.priority > e.Priority {
				addReserved(withHolds, h.member, h.requests)
				if !slices.Contains(heldFor, h.key) {
					heldFor = append(heldFor, h.key)
				}
			}
		}
		res, err := place(e, withHolds, false)
		t.Result, t.Err = res, err
		switch {
		case err != nil:
		case res.Cluster != "":
			addReserved(reserved, res.Cluster, res.Requests)
		default:
			if isTarget && len(heldFor) > 0 {
				if unheld, err := place(e, reserved, false); err == nil && unheld.Cluster != "" {
					t.HeldFor, t.Unheld = heldFor, unheld
				}
			}
			if strategy == StrictFIFO {
				blocker = e.key()
			} else if queue[last].Priority < e.Priority {
				// Only a lower-priority JobSet behind it needs its holds.
				if could, err := place(e, nil, true); err == nil {
					for _, v := range could.Verdicts {
						if v.Fits {
							holds = append(holds, hold{priority: e.Priority, key: e.key(), member: v.Cluster, requests: res.Requests})
						}
					}
				}
			}
		}
		if isTarget {
			return t, true
		}
	}
	return Turn{}, false
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
// "Queued: 3rd of 12; <what it waits for>".
func queuedMessage(t Turn, strategy QueueingStrategy) (reason, msg string) {
	head := fmt.Sprintf("Queued: %s of %d; ", ordinal(t.Position), t.Of)
	switch {
	case t.Behind != "":
		return fleet.ReasonQueued, head + fmt.Sprintf("waits behind %s, first in the queue, which does not fit (queueing strategy %s)", t.Behind, strategy)
	case len(t.HeldFor) > 0:
		return fleet.ReasonQueued, head + fmt.Sprintf("the capacity it would take is held for %d higher-priority JobSet(s) waiting ahead of it (%s); without them it would fit on %s",
			len(t.HeldFor), strings.Join(firstN(t.HeldFor, 3), ", "), t.Unheld.Cluster)
	}
	return fleet.ReasonNoFit, head + "no member cluster fits: " + t.Result.Explain()
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
	queueLength = regexp.MustCompile(`^(Queued: \S+) of \d+; `)
	liveNumber  = regexp.MustCompile(`(^|[^\w.-])[0-9]+(\.[0-9]+)?[a-zA-Z%]*`)
)

// waitSignature is what a waiting JobSet's message says, without the live
// numbers that churn while nothing that matters changes (free amounts,
// percentages, the queue's length); its position stays. A waiting
// JobSet's condition is rewritten only when its reason or signature
// changes, so an idle fleet writes nothing.
func waitSignature(reason, msg string) string {
	head, rest := "", msg
	if m := queueLength.FindStringSubmatchIndex(msg); m != nil {
		head, rest = msg[m[2]:m[3]], msg[m[1]:]
	}
	return reason + "|" + head + "|" + liveNumber.ReplaceAllString(rest, "${1}#")
}

// suspended reports whether the JobSet is suspended on the hub.
func suspended(js *jobset.JobSet) bool { return ptr.Deref(js.Spec.Suspend, false) }
