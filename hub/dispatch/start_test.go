package dispatch

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// TestStartDeadline is the withdrawal of placements that do not start, as
// a table: only after the deadline, never once started, through the
// confirmed-stop path, excluding the member until its capacity changes,
// and never as a restart.
func TestStartDeadline(t *testing.T) {
	const timeout = 5 * time.Minute
	m1, m2 := planMember("m1"), planMember("m2")
	dispatchedAt := func(at time.Time, mutate ...func(*jobset.FleetStatus)) jobset.FleetStatus {
		fs := jobset.FleetStatus{Cluster: "m1", Epoch: 1, StartDeadlineSince: ptr.To(metav1.NewTime(at))}
		for _, f := range mutate {
			f(&fs)
		}
		return fs
	}
	pending := func(d *fleet.JobSetDispatch) { // accepted, reported, nothing ready
		d.Status.ObservedEpoch = d.Spec.Epoch
		d.Status.JobSetStatus.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "w", Active: 1}}
	}
	ready := func(d *fleet.JobSetDispatch) {
		pending(d)
		d.Status.JobSetStatus.ReplicatedJobsStatus[0].Ready = 1
	}
	// withdrawing is the status the withdrawal wrote.
	withdrawing := func(js *jobset.JobSet) *jobset.JobSet {
		meta.SetStatusCondition(&js.Status.Conditions, metav1.Condition{Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse,
			Reason: fleet.ReasonStartTimeout, Message: "withdrawing", LastTransitionTime: metav1.NewTime(t0)})
		return js
	}
	gone := func(*jobset.JobSet) *fleet.JobSetDispatch { return nil }
	withdrawnFromM1 := func(capacity string) func(*jobset.FleetStatus) {
		return func(fs *jobset.FleetStatus) {
			fs.Withdrawals = []jobset.Withdrawal{{Cluster: "m1", Epoch: 1, Capacity: capacity, Time: metav1.NewTime(t0)}}
		}
	}
	type want struct {
		delete, create string
		dispatched     string // "Status/Reason" of the written status, "" unchanged
		withdrawals    int
		startedEpoch   int64
		restarts       int32
		requeue        bool
	}
	cases := []struct {
		name      string
		js        *jobset.JobSet
		members   []inventory.Member
		dispatch  func(js *jobset.JobSet) *fleet.JobSetDispatch
		now       time.Time
		want      want
		checkMsgs []string
	}{{
		name: "before the deadline: wait for it",
		js:   planJobSet(dispatchedAt(t0)),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:  t0.Add(timeout - time.Second),
		want: want{requeue: true},
	}, {
		name: "past the deadline, nothing started: withdraw",
		js:   planJobSet(dispatchedAt(t0)),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:       t0.Add(timeout + time.Second),
		want:      want{delete: "m1", dispatched: "False/StartTimeout", withdrawals: 1},
		checkMsgs: []string{"no Pod of epoch 1 started on member m1 within the start deadline (5m)", "not a restart"},
	}, {
		name: "past the deadline but started: never withdrawn, and remembered",
		js:   planJobSet(dispatchedAt(t0)),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), ready))
		},
		now:  t0.Add(timeout + time.Second),
		want: want{startedEpoch: 1},
	}, {
		name: "started once, nothing ready now: never withdrawn",
		js:   planJobSet(dispatchedAt(t0, func(fs *jobset.FleetStatus) { fs.StartedEpoch = 1 })),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:  t0.Add(timeout + time.Hour),
		want: want{startedEpoch: 1},
	}, {
		name: "the agent says Started (a Job only some of whose Pods run)",
		js:   planJobSet(dispatchedAt(t0)),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending, func(d *fleet.JobSetDispatch) {
				meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchStarted, Status: metav1.ConditionTrue, Reason: "PodRunning"})
			}))
		},
		now:  t0.Add(timeout + time.Second),
		want: want{startedEpoch: 1},
	}, {
		name: "annotation 0 turns it off",
		js:   planJobSet(dispatchedAt(t0), fleet.StartTimeoutAnnotation, "0"),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now: t0.Add(timeout + time.Hour),
	}, {
		name: "annotation shortens it",
		js:   planJobSet(dispatchedAt(t0), fleet.StartTimeoutAnnotation, "30s"),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:  t0.Add(time.Minute),
		want: want{delete: "m1", dispatched: "False/StartTimeout", withdrawals: 1},
	}, {
		name: "suspended: not withdrawn",
		js: func() *jobset.JobSet {
			js := planJobSet(dispatchedAt(t0))
			js.Spec.Suspend = ptr.To(true)
			return js
		}(),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending, func(d *fleet.JobSetDispatch) { d.Spec.JobSet.Spec.Suspend = ptr.To(true) }))
		},
		now: t0.Add(timeout + time.Hour),
	}, {
		name:     "not reported for this epoch: cannot judge",
		js:       planJobSet(dispatchedAt(t0)),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch { return ptr.To(planDispatch(js, fleetOf(&js.Status))) },
		now:      t0.Add(timeout + time.Hour),
	}, {
		name:    "member's heartbeat not fresh: cannot judge",
		js:      planJobSet(dispatchedAt(t0)),
		members: []inventory.Member{planMember("m1", func(m *inventory.Member) { m.HeartbeatFresh, m.Reason = false, "stale" }), m2},
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:  t0.Add(timeout + time.Hour),
		want: want{requeue: true}, // for the member-lost timeout, not the deadline
	}, {
		name:    "member draining, nothing started: withdrawn now, before the deadline",
		js:      planJobSet(dispatchedAt(t0)),
		members: []inventory.Member{planMember("m1", func(m *inventory.Member) { m.Cordoned, m.Draining = true, true }), m2},
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:       t0.Add(time.Second),
		want:      want{delete: "m1", dispatched: "False/MemberDraining", withdrawals: 1},
		checkMsgs: []string{"member m1 is being drained and no Pod of epoch 1 started there", "not a restart"},
	}, {
		name:    "member draining, started: left to finish",
		js:      planJobSet(dispatchedAt(t0)),
		members: []inventory.Member{planMember("m1", func(m *inventory.Member) { m.Cordoned, m.Draining = true, true }), m2},
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), ready))
		},
		now:  t0.Add(time.Second),
		want: want{startedEpoch: 1},
	}, {
		name:    "member draining, start deadline off: withdrawn all the same",
		js:      planJobSet(dispatchedAt(t0), fleet.StartTimeoutAnnotation, "0"),
		members: []inventory.Member{planMember("m1", func(m *inventory.Member) { m.Cordoned, m.Draining = true, true }), m2},
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending))
		},
		now:  t0.Add(time.Second),
		want: want{delete: "m1", dispatched: "False/MemberDraining", withdrawals: 1},
	}, {
		name: "withdrawing: nothing new until the agent confirms",
		js:   withdrawing(planJobSet(dispatchedAt(t0, withdrawnFromM1(capacityFingerprint(m1))))),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending, deleting))
		},
		now:  t0.Add(timeout + time.Minute),
		want: want{withdrawals: 1},
	}, {
		name: "confirmed gone: placed again elsewhere, not as a restart",
		js:   withdrawing(planJobSet(dispatchedAt(t0, withdrawnFromM1(capacityFingerprint(m1))))),
		dispatch: func(js *jobset.JobSet) *fleet.JobSetDispatch {
			return ptr.To(planDispatch(js, fleetOf(&js.Status), pending, deleting, reportedDeleted))
		},
		now:       t0.Add(timeout + time.Minute),
		want:      want{create: "m2", dispatched: "True/Dispatched", withdrawals: 1},
		checkMsgs: []string{"withdrawn earlier, as no Pod started within the start deadline, from: m1 (epoch 1)"},
	}, {
		name:      "the member it left stays excluded while its capacity is unchanged",
		js:        withdrawing(planJobSet(dispatchedAt(t0, withdrawnFromM1(capacityFingerprint(m1))))),
		members:   []inventory.Member{m1},
		dispatch:  gone,
		now:       t0.Add(timeout + time.Minute),
		want:      want{dispatched: "False/NoFit", withdrawals: 1},
		checkMsgs: []string{"not a candidate until the member's capacity changes"},
	}, {
		name: "once its capacity changed it is a candidate again",
		js:   withdrawing(planJobSet(dispatchedAt(t0, withdrawnFromM1(capacityFingerprint(m1))))),
		members: []inventory.Member{planMember("m1", func(m *inventory.Member) {
			m.Free = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("63")}
		})},
		dispatch: gone,
		now:      t0.Add(timeout + time.Minute),
		want:     want{create: "m1", dispatched: "True/Dispatched", withdrawals: 1},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			members := tc.members
			if members == nil {
				members = []inventory.Member{m1, m2}
			}
			o := Observed{JobSet: tc.js, Now: tc.now, LostTimeout: lostAfter, StartTimeout: timeout, Members: map[string]inventory.Member{}}
			for _, m := range members {
				o.Members[m.Name] = m
			}
			if d := tc.dispatch(tc.js); d != nil {
				o.Dispatches = []fleet.JobSetDispatch{*d}
			}
			choose := func(excluded map[string]string) (Choice, error) {
				res, err := placement.Place(placement.Request{JobSet: tc.js, Members: members, Excluded: excluded})
				return Choice{Result: res}, err
			}
			p, err := ComputePlan(o, choose)
			if err != nil {
				t.Fatal(err)
			}
			var got want
			for _, d := range p.Delete {
				got.delete += memberOf(d)
			}
			if p.Create != nil {
				got.create = memberOf(p.Create)
				if p.Record == nil {
					t.Error("created without recording the placement first")
				}
			}
			got.requeue = p.RequeueAfter > 0
			st := writtenStatus(p)
			if st == nil {
				st = &tc.js.Status
			} else if c := meta.FindStatusCondition(st.Conditions, fleet.ConditionDispatched); c != nil {
				if old := meta.FindStatusCondition(tc.js.Status.Conditions, fleet.ConditionDispatched); old == nil || old.Reason != c.Reason || old.Status != c.Status {
					got.dispatched = string(c.Status) + "/" + c.Reason
				}
			}
			fs := fleetOf(st)
			if testing.Verbose() {
				t.Logf("conditions %+v", st.Conditions)
			}
			got.withdrawals, got.startedEpoch, got.restarts = len(fs.Withdrawals), fs.StartedEpoch, st.Restarts
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if fs.RestartsCarried != 0 || fs.RestartsCountTowardsMaxCarried != 0 {
				t.Errorf("a withdrawal was counted as a restart: %+v", fs)
			}
			c := meta.FindStatusCondition(st.Conditions, fleet.ConditionDispatched)
			for _, m := range tc.checkMsgs {
				if c == nil || !strings.Contains(c.Message, m) {
					t.Errorf("Dispatched %+v does not say %q", c, m)
				}
			}
		})
	}
}

// TestWaitingIsQuiet: a JobSet that keeps waiting for the same reason is
// not rewritten, whatever live numbers changed; nor is its decision
// published again.
func TestWaitingIsQuiet(t *testing.T) {
	js := planJobSet(jobset.FleetStatus{})
	js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100")}
	plan := func(js *jobset.JobSet, free string) Plan {
		m := planMember("m1", func(m *inventory.Member) { m.Free = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(free)} })
		o := Observed{JobSet: js, Now: t0, LostTimeout: lostAfter, Members: map[string]inventory.Member{"m1": m}}
		p, err := ComputePlan(o, func(excluded map[string]string) (Choice, error) {
			res, err := placement.Place(placement.Request{JobSet: js, Members: []inventory.Member{m}, Excluded: excluded})
			return Choice{Result: res, Queue: &Turn{Position: 1, Result: res}}, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := plan(js, "10")
	if first.Status == nil || first.Decision == nil {
		t.Fatalf("the first wait is not written: %+v", first)
	}
	js.Status = *first.Status
	if again := plan(js, "12"); again.Status != nil || again.Decision != nil {
		t.Errorf("a new free amount rewrote a waiting JobSet: status %v, decision %v", again.Status != nil, again.Decision != nil)
	}
}

func TestCapacityFingerprintSeesNodes(t *testing.T) {
	node := func(freeGPU string) *fleet.NodeSummary {
		return &fleet.NodeSummary{Groups: []fleet.NodeGroup{{
			Nodes:       2,
			Allocatable: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")},
			Free:        []fleet.FreeNodes{{Count: 2, Free: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse(freeGPU)}}},
		}}}
	}
	a := inventory.Member{Name: "m1", Nodes: node("4")}
	b := inventory.Member{Name: "m1", Nodes: node("4")}
	c := inventory.Member{Name: "m1", Nodes: node("8")}
	if capacityFingerprint(a) != capacityFingerprint(b) {
		t.Error("the same nodes give different fingerprints")
	}
	if capacityFingerprint(a) == capacityFingerprint(c) {
		t.Error("nodes freed without the sums moving leave the fingerprint unchanged: a withdrawn member stays excluded")
	}
	emptied := emptiedMembers([]inventory.Member{c})[0]
	if got := emptied.Nodes.Groups[0].Free; len(got) != 1 || got[0].Count != 2 || !got[0].Free["nvidia.com/gpu"].Equal(resource.MustParse("8")) {
		t.Errorf("emptied member's nodes: %+v, want every node at its allocatable", got)
	}
}

func TestDrainWithdrawalDoesNotExcludeAfterUncordon(t *testing.T) {
	m1 := planMember("m1")
	fs := jobset.FleetStatus{Withdrawals: []jobset.Withdrawal{{Cluster: "m1", Epoch: 1, Capacity: "", Time: metav1.NewTime(t0)}}}
	if got := withdrawnExclusions(fs, map[string]inventory.Member{"m1": m1}); len(got) != 0 {
		t.Errorf("a drain's withdrawal excludes the uncordoned member: %v", got)
	}
}

// A waiting JobSet is looked at again when a member's nodes change, even
// if its sums do not: a lifted taint or a relabelled node may let it fit.
func TestNodeChangesCouldLetItFit(t *testing.T) {
	tainted := planMember("m1", func(m *inventory.Member) {
		m.Nodes = &fleet.NodeSummary{Groups: []fleet.NodeGroup{{Nodes: 1, Taints: []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}}}}
	})
	lifted := planMember("m1", func(m *inventory.Member) { m.Nodes = &fleet.NodeSummary{Groups: []fleet.NodeGroup{{Nodes: 1}}} })
	if !couldLetFit(viewOf(tainted), viewOf(lifted), true) {
		t.Error("a taint lifted on the member's nodes does not re-evaluate waiting JobSets")
	}
	if couldLetFit(viewOf(lifted), viewOf(lifted), true) {
		t.Error("an unchanged member re-evaluates waiting JobSets")
	}
}
