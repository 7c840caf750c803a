package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// FAULT: during a partition longer than the member-lost timeout the agent
// is restarted again and again (a crash-looping Deployment), each
// incarnation stopped fenceTimeout/2 after it started, so none lives long
// enough to fence by counting from its own start. A restart is not a
// renewal: every incarnation counts from the last renewal that reached
// the hub. partitionWhile holds the copies to the fence deadline.
func TestFaultAgentRestartsDuringPartition(t *testing.T) {
	ns := namespace(t, "fault-restarts")
	from := placeBothPolicies(t, ns)
	mem := env.members[from]
	t.Cleanup(func() {
		// A failed restart leaves the member without its agent.
		if mem.currentAgent() == nil {
			must(t, mem.startAgent())
		}
	})
	partitionWhile(t, ns, from, "agent restarts", func() {
		time.Sleep(fenceTimeout / 2)
		must(t, mem.stopAgent())
		must(t, mem.startAgent())
	})
}

// FAULT: the same, with the agent as it is installed (cmd/agent, leader
// election on its member) crash-looping: each incarnation is killed
// (kill -9, so it never gives up its leader-election Lease) fenceTimeout/2
// after it started, and started again a second later, as a kubelet would.
// An agent that waits for leadership, or for anything else slow, before
// its first fence check never fences here.
func TestFaultAgentCrashLoopsDuringPartition(t *testing.T) {
	ns := namespace(t, "fault-crashloop")
	from := placeBothPolicies(t, ns)
	a := env.members[from].runAgentProcess(t, agentProcessOptions{leaderElection: true, restart: true})
	partitionWhile(t, ns, from, "agent kills", func() {
		p := a.process()
		time.Sleep(fenceTimeout / 2)
		p.Kill()
		testenv.Eventually(t, 30*time.Second, "the agent started again", func() error {
			if a.process() == p {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	})
}

// placeBothPolicies places, running on one member (returned), JobSet "a",
// which opted into at-least-once failover, and "r", with the default
// policy (pinned to the same member).
func placeBothPolicies(t *testing.T, ns string) string {
	t.Helper()
	_, from, _ := placeRunning(t, ns, "a", fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce)
	placeRunning(t, ns, "r", fleet.PinnedClusterAnnotation, from)
	return from
}

// partitionWhile cuts member from off the hub for longer than the
// member-lost timeout, applying fault to its agent again and again, then
// heals the link.
//
// What the agent promises is that its copies are stopped before the hub
// may count the member lost, memberLostTimeout after the last renewal that
// reached the hub: from then on the hub runs "a", which opted into
// at-least-once failover, elsewhere. So the copies are held to that
// deadline (fenceDeadline), and "a" to its consequence (placeRunning's
// sampler): never two copies running. How early within that window the
// agent fences is not asserted: that depends on how fast a process
// starts, which a loaded machine stretches. "r" is never moved without
// proof and, once the link heals, carries on where it ran; "a" runs only
// where the hub moved it.
func partitionWhile(t *testing.T, ns, from, faults string, fault func()) {
	t.Helper()
	to := env.other(from)
	mem := env.members[from]
	mem.proxy.Cut()
	cut := time.Now()
	healed := false
	t.Cleanup(func() {
		if !healed {
			_ = mem.proxy.Heal()
		}
	})
	w := watchFenceDeadline(from, ns, "a", "r")
	t.Cleanup(w.stop)

	n := 0
	for time.Since(cut) < memberLostTimeout+2*fenceTimeout {
		fault()
		n++
		if cur := hubJobSet(t, ns, "r"); placedOn(cur) != from || epochOf(cur) != 1 {
			t.Fatalf("r moved during the partition: %+v", cur.Status.Fleet)
		}
	}
	w.stop()
	t.Logf("%d %s during a %s partition", n, faults, time.Since(cut).Round(time.Second))
	w.report(t)

	must(t, mem.proxy.Heal())
	healed = true
	waitCopyRunning(t, from, ns, "r")
	testenv.Eventually(t, time.Minute, "a moved to "+to+" at epoch 2, nothing of it left on "+from, func() error {
		if cur := hubJobSet(t, ns, "a"); placedOn(cur) != to || epochOf(cur) != 2 {
			return fmt.Errorf("status.fleet %+v", cur.Status.Fleet)
		}
		if c := memberJobSet(t, from, ns, "a"); c != nil {
			return fmt.Errorf("the copy of epoch %s is still on %s", c.Labels[fleet.EpochLabel], from)
		}
		return nil
	})
	waitCopyRunning(t, to, ns, "a")
}

// fenceDeadline samples, every 100ms, the member's copies of some JobSets
// and the heartbeat Lease its agent renews on the hub. Once the last
// renewal that reached the hub (the Lease's renewTime; the test, the agent
// and the hub share one clock) is memberLostTimeout old, the hub may count
// the member lost, and every copy must be fenced: suspended, or gone.
type fenceDeadline struct {
	member   string
	ns       string
	names    []string
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}

	mu sync.Mutex
	// late records, per JobSet, the first sample that found its copy
	// running past the deadline.
	late map[string]string
	// fenced is, per JobSet, how long after the last renewal it was first
	// seen fenced.
	fenced map[string]time.Duration
	// pastDeadline counts samples taken after the deadline, so the test
	// knows the deadline was checked at all.
	pastDeadline int
	errs         []error
}

func watchFenceDeadline(member, ns string, names ...string) *fenceDeadline {
	w := &fenceDeadline{member: member, ns: ns, names: names, quit: make(chan struct{}), done: make(chan struct{}),
		late: map[string]string{}, fenced: map[string]time.Duration{}}
	go func() {
		defer close(w.done)
		for {
			w.sample(context.Background())
			select {
			case <-w.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *fenceDeadline) sample(ctx context.Context) {
	lease := &coordinationv1.Lease{}
	key := types.NamespacedName{Namespace: fleet.MemberNamespace(w.member), Name: fleet.HeartbeatLeaseName}
	if err := env.hub.Client.Get(ctx, key, lease); err != nil || lease.Spec.RenewTime == nil {
		w.fail(fmt.Errorf("reading heartbeat Lease %s: %v (renewTime %v)", key, err, lease.Spec.RenewTime))
		return
	}
	renewed := lease.Spec.RenewTime.Time
	deadline := renewed.Add(memberLostTimeout)
	// Taken before the copies are read: a copy read as running was still
	// running at some instant at or after now.
	now := time.Now()
	for _, name := range w.names {
		running, state, err := copyMayRun(ctx, w.member, w.ns, name)
		if err != nil {
			w.fail(err)
			continue
		}
		w.mu.Lock()
		if _, seen := w.fenced[name]; !running && !seen {
			w.fenced[name] = now.Sub(renewed)
		}
		if running && !now.Before(deadline) {
			if _, seen := w.late[name]; !seen {
				w.late[name] = fmt.Sprintf("%s/%s on %s not fenced %s after the last renewal that reached the hub (member-lost timeout %s, fence timeout %s): %s",
					w.ns, name, w.member, now.Sub(renewed).Round(10*time.Millisecond), memberLostTimeout, fenceTimeout, state)
			}
		}
		w.mu.Unlock()
	}
	if !now.Before(deadline) {
		w.mu.Lock()
		w.pastDeadline++
		w.mu.Unlock()
	}
}

func (w *fenceDeadline) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 5 {
		w.errs = append(w.errs, err)
	}
}

func (w *fenceDeadline) stop() {
	w.stopOnce.Do(func() { close(w.quit) })
	<-w.done
}

// report fails t for every copy that ran past the deadline, and if the
// deadline was never sampled; it logs when each copy was fenced.
func (w *fenceDeadline) report(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range w.errs {
		t.Error(err)
	}
	if w.pastDeadline == 0 {
		t.Errorf("no sample after the member-lost deadline: the fence deadline was not checked")
	}
	for _, name := range w.names {
		if msg, ok := w.late[name]; ok {
			t.Error(msg)
		}
		if d, ok := w.fenced[name]; ok {
			t.Logf("copy of %s on %s first seen fenced %s after the last renewal that reached the hub (fence timeout %s, member-lost timeout %s)",
				name, w.member, d.Round(10*time.Millisecond), fenceTimeout, memberLostTimeout)
		}
	}
}

// copyMayRun reports whether the member's copy of ns/name may still run
// (it exists and is not suspended), with what it saw.
func copyMayRun(ctx context.Context, member, ns, name string) (running bool, state string, err error) {
	js := &jobset.JobSet{}
	switch err := env.members[member].cluster.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); {
	case apierrors.IsNotFound(err):
		return false, "gone", nil
	case err != nil:
		return false, "", fmt.Errorf("reading the copy of %s/%s on %s: %w", ns, name, member, err)
	case js.IsSuspended():
		return false, "suspended", nil
	}
	return true, "not suspended (epoch " + js.Labels[fleet.EpochLabel] + ")", nil
}
