package agent

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

func TestFenceTick(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{30 * time.Second, time.Second},
		{3 * time.Second, 300 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
		{time.Hour, time.Second},
	} {
		if got := fenceTick(tc.timeout); got != tc.want {
			t.Errorf("fenceTick(%s) = %s, want %s", tc.timeout, got, tc.want)
		}
	}
}

func TestStandbyShouldFence(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	renewal := func(stamp time.Time) recordedRenewal {
		// RenewTime is the writer's wall clock, an hour off: it must not
		// count.
		return recordedRenewal{RenewTime: at(0).Add(-time.Hour), Stamp: stamp}
	}
	const timeout = 30 * time.Second
	for _, tc := range []struct {
		name      string
		recorded  recordedRenewal
		memberNow time.Time
		fence     bool
		since     time.Duration
	}{
		{"nothing recorded: the agent never ran a copy", recordedRenewal{}, at(50), false, 0},
		{"recent", renewal(at(10)), at(30), false, 21 * time.Second},
		{"a stamp short of the timeout fences: early, never late", renewal(at(10)), at(39), true, timeout},
		{"old", renewal(at(0)), at(45), true, 46 * time.Second},
		{"record not stamped: cannot be measured, counts as too old", renewal(time.Time{}), at(30), true, timeout},
		{"no stamp of the member's clock", renewal(at(10)), time.Time{}, true, timeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fence, since := standbyShouldFence(tc.recorded, tc.memberNow, timeout)
			if fence != tc.fence || since != tc.since {
				t.Errorf("standbyShouldFence = %v, %s; want %v, %s", fence, since, tc.fence, tc.since)
			}
		})
	}
}

func TestMemberClock(t *testing.T) {
	// The local wall clock is a day off the member apiserver's; only its
	// progress counts.
	local := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	stamp := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	m := memberClock{stamp: stamp, local: local.Now()}
	if got := m.now(local); !got.Equal(stamp) {
		t.Errorf("at the stamp: %s, want %s", got, stamp)
	}
	local.SetTime(local.Now().Add(7 * time.Second))
	if got, want := m.now(local), stamp.Add(7*time.Second); !got.Equal(want) {
		t.Errorf("7s later: %s, want %s", got, want)
	}
	if got := (memberClock{local: local.Now()}).now(local); !got.IsZero() {
		t.Errorf("without a stamp: %s, want zero", got)
	}
}

// A fence decided just before the process shuts down runs to the end: the
// copies are stopped even though the context it was decided under is
// already cancelled. And a leader's fencer checks as soon as it runs, not
// a tick later: a new leader may be past its fence timeout already.
func TestFencerOnShutdownAndAtStart(t *testing.T) {
	member := testenv.Start(t, "fence-shutdown")
	ctx := context.Background()
	if err := member.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}); err != nil {
		t.Fatal(err)
	}
	newCopy := func(name string) *jobset.JobSet {
		js := jstesting.MakeJobSet("team-a", name).ReplicatedJob(jstesting.MakeReplicatedJob("w").Replicas(1).Container("c", "busybox").Obj()).Obj()
		js.Annotations = map[string]string{fleet.DispatchAnnotation: "fleet-member-m1/team-a." + name}
		if err := member.Client.Create(ctx, js); err != nil {
			t.Fatal(err)
		}
		return js
	}
	suspended := func(js *jobset.JobSet) bool {
		if err := member.Client.Get(ctx, client.ObjectKeyFromObject(js), js); err != nil {
			t.Fatal(err)
		}
		return js.IsSuspended()
	}
	newFencer := func(timeout time.Duration) *fencer {
		// The last renewal was long before the fence timeout.
		live := newLiveness(clock.RealClock{})
		live.restore(time.Now(), 2*timeout)
		return &fencer{member: member.Client, memberNamespace: "fleet-member-m1", timeout: timeout, action: FenceSuspend,
			live: live, resync: func(context.Context) {}, errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_fence_errors"})}
	}

	t.Run("shutting down", func(t *testing.T) {
		js := newCopy("shutdown")
		shuttingDown, cancel := context.WithCancel(ctx)
		cancel()
		newFencer(time.Second).check(shuttingDown)
		if !suspended(js) {
			t.Error("the copy runs on: stopping it was cut short by the shutdown")
		}
	})
	t.Run("at start", func(t *testing.T) {
		js := newCopy("start")
		// A long timeout: a tick of 1s, the longest.
		f := newFencer(time.Hour)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.run(runCtx)
		}()
		defer func() {
			cancel()
			<-done
		}()
		deadline := time.Now().Add(fenceTick(f.timeout) - 100*time.Millisecond)
		for !suspended(js) {
			if time.Now().After(deadline) {
				t.Fatalf("not suspended %s after the fencer started: it waits for its first tick (%s)", fenceTick(f.timeout)-100*time.Millisecond, fenceTick(f.timeout))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
