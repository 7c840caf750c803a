package dispatch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// queued is a pending JobSet asking cpu, submitted at t0+age, of priority.
func queued(name, cpu string, priority int32, age time.Duration) Pending {
	js := jstesting.MakeJobSet("team", name).UID(types.UID(name)).CreationTimestamp(t0.Add(age)).ManagedBy(fleet.ManagedByFleet).
		ReplicatedJob(jstesting.MakeReplicatedJob("w").Replicas(1).Container("c", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}).Obj()).Obj()
	return Pending{JobSet: js, Priority: priority}
}

// cpuMember has allocatable cpu, free of it.
func cpuMember(name, allocatable, free string) inventory.Member {
	return planMember(name, func(m *inventory.Member) {
		m.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(allocatable)}
		m.Free = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(free)}
	})
}

// placer places as the reconciler does, on members with no commitments.
func placer(members ...inventory.Member) Placer {
	return func(p Pending, reserved map[string]corev1.ResourceList, emptied bool) (placement.Result, error) {
		req := placement.Request{JobSet: p.JobSet, Members: members, Excluded: p.Excluded, Committed: reserved}
		if emptied {
			req.Members, req.Committed = emptiedMembers(members), nil
		}
		return placement.Place(req)
	}
}

// sharedWalkAgrees: one walk serves every JobSet of the queue, each
// getting the turn Admit gives it alone; and a walk resumed after a
// JobSet joined at the end gives the turns a fresh walk gives.
func sharedWalkAgrees(t *testing.T, queue []Pending, strategy QueueingStrategy, place Placer) {
	t.Helper()
	same := func(a, b Turn) bool {
		return a.Result.Cluster == b.Result.Cluster && a.Position == b.Position && a.Behind == b.Behind &&
			strings.Join(a.HeldFor, ",") == strings.Join(b.HeldFor, ",") && a.Unheld.Cluster == b.Unheld.Cluster && (a.Err == nil) == (b.Err == nil)
	}
	w := newWalk(slices.Clone(queue), strategy, place)
	for i := len(w.queue) - 1; i >= 0; i-- { // the last first: the others are served from its walk
		alone, _ := Admit(slices.Clone(queue), strategy, place, w.queue[i].key())
		if got := w.turn(i); !same(got, alone) {
			t.Errorf("shared walk gives %s %+v, alone %+v", w.queue[i].key(), got, alone)
		}
	}
	joined := append(slices.Clone(queue), queued("late", "1", -1, time.Hour))
	fresh, resumed := newWalk(slices.Clone(joined), strategy, place), newWalk(slices.Clone(joined), strategy, place)
	resumed.resume(w)
	if len(resumed.turns) != len(queue) {
		t.Errorf("resumed %d turns, want the %d walked", len(resumed.turns), len(queue))
	}
	for i := range joined {
		if a, b := fresh.turn(i), resumed.turn(i); !same(a, b) {
			t.Errorf("resumed walk gives %s %+v, fresh %+v", fresh.queue[i].key(), b, a)
		}
	}
}

func TestAdmit(t *testing.T) {
	type want struct {
		member   string // where it goes; "" waits
		position int
		behind   string
		heldFor  string
	}
	cases := []struct {
		name     string
		strategy QueueingStrategy
		members  []inventory.Member
		queue    []Pending
		target   string
		want     want
	}{{
		name:    "alone and fits",
		members: []inventory.Member{cpuMember("m1", "8", "8")},
		queue:   []Pending{queued("a", "4", 0, 0)},
		target:  "team/a", want: want{member: "m1", position: 1},
	}, {
		name:    "older of the same priority goes first and takes the room",
		members: []inventory.Member{cpuMember("m1", "8", "6")},
		queue:   []Pending{queued("young", "4", 0, time.Minute), queued("old", "4", 0, 0)},
		target:  "team/young", want: want{position: 2},
	}, {
		name:    "higher priority goes first even when younger",
		members: []inventory.Member{cpuMember("m1", "8", "6")},
		queue:   []Pending{queued("old", "4", 0, 0), queued("urgent", "4", 100, time.Hour)},
		target:  "team/old", want: want{position: 2},
	}, {
		name:    "same submission time: by name",
		members: []inventory.Member{cpuMember("m1", "8", "6")},
		queue:   []Pending{queued("b", "4", 0, 0), queued("a", "4", 0, 0)},
		target:  "team/a", want: want{member: "m1", position: 1},
	}, {
		name:    "BestEffortFIFO: a big one that does not fit does not block a small one of its priority",
		members: []inventory.Member{cpuMember("m1", "16", "6")},
		queue:   []Pending{queued("big", "12", 0, 0), queued("small", "4", 0, time.Minute)},
		target:  "team/small", want: want{member: "m1", position: 2},
	}, {
		name:     "StrictFIFO: the head that does not fit blocks the queue",
		strategy: StrictFIFO,
		members:  []inventory.Member{cpuMember("m1", "16", "6")},
		queue:    []Pending{queued("big", "12", 0, 0), queued("small", "4", 0, time.Minute)},
		target:   "team/small", want: want{position: 2, behind: "team/big"},
	}, {
		name:     "StrictFIFO: a head that fits blocks nobody",
		strategy: StrictFIFO,
		members:  []inventory.Member{cpuMember("m1", "16", "10")},
		queue:    []Pending{queued("head", "4", 0, 0), queued("next", "4", 0, time.Minute)},
		target:   "team/next", want: want{member: "m1", position: 2},
	}, {
		name:    "no overtaking: a lower-priority one may not take what a waiting higher-priority one needs",
		members: []inventory.Member{cpuMember("m1", "16", "6")},
		queue:   []Pending{queued("urgent", "12", 100, time.Hour), queued("low", "4", 0, 0)},
		target:  "team/low", want: want{position: 2, heldFor: "team/urgent"},
	}, {
		name:    "no overtaking: nor on any member where the waiting one could run once emptied",
		members: []inventory.Member{cpuMember("m1", "16", "6"), cpuMember("m2", "32", "8")},
		queue:   []Pending{queued("urgent", "12", 100, 0), queued("low", "4", 0, 0)},
		target:  "team/low", want: want{position: 2, heldFor: "team/urgent"},
	}, {
		name:    "no overtaking applies to lower priority only",
		members: []inventory.Member{cpuMember("m1", "16", "6")},
		queue:   []Pending{queued("big", "12", 100, 0), queued("peer", "4", 100, time.Minute)},
		target:  "team/peer", want: want{member: "m1", position: 2},
	}, {
		name:    "no overtaking: a member the waiting one can never use is free to take",
		members: []inventory.Member{cpuMember("m1", "16", "6"), cpuMember("small", "8", "8")},
		queue:   []Pending{queued("urgent", "12", 100, 0), queued("low", "4", 0, 0)},
		target:  "team/low", want: want{member: "small", position: 2},
	}, {
		name:    "no overtaking: a member excluded for the waiting one is free to take",
		members: []inventory.Member{cpuMember("m1", "16", "6")},
		queue: []Pending{func() Pending {
			p := queued("urgent", "12", 100, 0)
			p.Excluded = map[string]string{"m1": "withdrawn"}
			return p
		}(), queued("low", "4", 0, 0)},
		target: "team/low", want: want{member: "m1", position: 2},
	}, {
		name:    "a waiting JobSet that can never fit anywhere holds nothing",
		members: []inventory.Member{cpuMember("m1", "16", "6")},
		queue:   []Pending{queued("huge", "64", 100, 0), queued("low", "4", 0, 0)},
		target:  "team/low", want: want{member: "m1", position: 2},
	}, {
		name:    "JobSets ahead that fit take their share first",
		members: []inventory.Member{cpuMember("m1", "16", "8")},
		queue:   []Pending{queued("a", "4", 0, 0), queued("b", "4", 0, time.Second), queued("c", "4", 0, 2*time.Second)},
		target:  "team/c", want: want{position: 3},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			strategy := tc.strategy
			if strategy == "" {
				strategy = BestEffortFIFO
			}
			turn, ok := Admit(slices.Clone(tc.queue), strategy, placer(tc.members...), tc.target)
			if !ok {
				t.Fatal("target not in the queue")
			}
			sharedWalkAgrees(t, tc.queue, strategy, placer(tc.members...))
			got := want{member: turn.Result.Cluster, position: turn.Position, behind: turn.Behind, heldFor: strings.Join(turn.HeldFor, ",")}
			if got != tc.want {
				t.Errorf("turn = %+v, want %+v (verdicts %s)", got, tc.want, turn.Result.Explain())
			}
			if turn.Waiting() {
				reason, msg := queuedMessage(turn, strategy)
				if !strings.HasPrefix(msg, "Queued: ") || reason == "" {
					t.Errorf("waiting message %s %q", reason, msg)
				}
			}
		})
	}
}

func TestPriority(t *testing.T) {
	classes := []schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000},
		{ObjectMeta: metav1.ObjectMeta{Name: "low"}, Value: -5},
		{ObjectMeta: metav1.ObjectMeta{Name: "normal"}, Value: 10, GlobalDefault: true},
	}
	js := func(names ...string) *jobset.JobSet {
		w := jstesting.MakeJobSet("team", "x")
		for i, n := range names {
			rj := jstesting.MakeReplicatedJob(string(rune('a' + i))).Replicas(1).Obj()
			rj.Template.Spec.Template.Spec.PriorityClassName = n
			w.ReplicatedJob(rj)
		}
		return w.Obj()
	}
	for _, tc := range []struct {
		name    string
		js      *jobset.JobSet
		classes []schedulingv1.PriorityClass
		want    int32
	}{
		{"named class", js("high"), classes, 1000},
		{"none named: the global default", js(""), classes, 10},
		{"none named, no default", js(""), classes[:2], 0},
		{"the highest of its replicated jobs", js("low", "high"), classes, 1000},
		{"one unnamed gets the default", js("low", ""), classes, 10},
		{"unknown class", js("missing"), classes, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Priority(tc.js, tc.classes); got != tc.want {
				t.Errorf("Priority = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestWaitSignatureIgnoresLiveNumbers(t *testing.T) {
	a := waitSignature(fleet.ReasonNoFit, "Queued: within the first 100; no member cluster fits: m1: insufficient resources: needs cpu 16, 3950m free")
	b := waitSignature(fleet.ReasonNoFit, "Queued: within the first 100; no member cluster fits: m1: insufficient resources: needs cpu 16, 3900m free")
	if a != b {
		t.Errorf("free amounts changed the signature:\n%s\n%s", a, b)
	}
	for _, other := range []string{
		waitSignature(fleet.ReasonNoFit, "Queued: within the first 10; no member cluster fits: m1: insufficient resources: needs cpu 16, 3950m free"),
		waitSignature(fleet.ReasonNoFit, "Queued: within the first 100; no member cluster fits: m1: unhealthy: heartbeat not renewed"),
		waitSignature(fleet.ReasonQueued, "Queued: within the first 100; no member cluster fits: m1: insufficient resources: needs cpu 16, 3950m free"),
		// Digits in names are names: another member, not a live number.
		waitSignature(fleet.ReasonNoFit, "Queued: within the first 100; no member cluster fits: m2: insufficient resources: needs cpu 16, 3950m free"),
	} {
		if other == a {
			t.Errorf("a new place, verdict or reason kept the signature: %s", other)
		}
	}
	// An earlier hub's message: its queue length is not compared.
	if old, cur := waitSignature(fleet.ReasonNoFit, "Queued: 2nd of 12; no member cluster fits: m1: x"), waitSignature(fleet.ReasonNoFit, "Queued: 2nd; no member cluster fits: m1: x"); old != cur {
		t.Errorf("an earlier hub's message has another signature:\n%s\n%s", old, cur)
	}
}

// TestQueuePlaceIsCoarse: a placement from the queue moves every JobSet
// behind it up one place, and what their conditions say changes for few
// of them: the exact places at the head and those crossing a power of ten.
func TestQueuePlaceIsCoarse(t *testing.T) {
	for p, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "within the first 10", 10: "within the first 10", 11: "within the first 100", 100: "within the first 100", 101: "within the first 1000", 4999: "within the first 10000"} {
		if got := queuePlace(p); got != want {
			t.Errorf("queuePlace(%d) = %q, want %q", p, got, want)
		}
	}
	const queued = 5000
	changed := 0
	for p := 2; p <= queued; p++ { // the head left: everyone moves up one
		if queuePlace(p) != queuePlace(p-1) {
			changed++
		}
	}
	if changed > exactPlaces+4 {
		t.Errorf("one placement from a queue of %d changes what %d conditions say", queued, changed)
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 102: "102nd"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestWalkPlacesEachShapeOnce: alike JobSets that do not fit cost one
// placement while nothing was placed between them; a JobSet placed
// between them makes the next one be placed again.
func TestWalkPlacesEachShapeOnce(t *testing.T) {
	queue := []Pending{queued("a", "8", 0, 0)}
	for i, name := range []string{"b", "c", "d", "e", "f"} {
		queue = append(queue, queued(name, "8", 0, time.Duration(i+1)*time.Second))
	}
	queue = append(queue, queued("g", "2", 0, 10*time.Second), queued("h", "8", 0, 11*time.Second), queued("i", "2", 0, 12*time.Second))
	calls := 0
	place := placer(cpuMember("m1", "10", "10"))
	counted := func(p Pending, reserved map[string]corev1.ResourceList, emptied bool) (placement.Result, error) {
		calls++
		return place(p, reserved, emptied)
	}
	w := newWalk(slices.Clone(queue), BestEffortFIFO, counted)
	var got []string
	for i := range w.queue {
		tn := w.turn(i)
		got = append(got, w.queue[i].JobSet.Name+"="+tn.Result.Cluster)
		if tn.Waiting() && !strings.Contains(tn.Result.Explain(), "insufficient") {
			t.Errorf("%s waits with %q", w.queue[i].JobSet.Name, tn.Result.Explain())
		}
	}
	if want := "a=m1 b= c= d= e= f= g=m1 h= i="; strings.Join(got, " ") != want {
		t.Errorf("turns %s, want %s", strings.Join(got, " "), want)
	}
	if calls != 5 { // a, b (c-f alike), g, h (after g took room), i
		t.Errorf("%d placements, want 5", calls)
	}
	sharedWalkAgrees(t, queue, BestEffortFIFO, place)
}

// BenchmarkWalkLongQueue walks a queue of n waiting JobSets of one
// priority behind a higher-priority one, as a kick after freed capacity
// does. The cost per JobSet should not grow with n.
func BenchmarkWalkLongQueue(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		queue := []Pending{queued("urgent", "16", 10, 0)}
		for i := range n {
			queue = append(queue, queued(fmt.Sprintf("js-%05d", i), "8", 0, time.Duration(i+1)*time.Second))
		}
		place := placer(cpuMember("m1", "10", "4"))
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			for b.Loop() {
				w := newWalk(slices.Clone(queue), BestEffortFIFO, place)
				for i := range w.queue {
					w.turn(i)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pending")
		})
	}
}
