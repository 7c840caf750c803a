package integration

import (
	"testing"
	"time"
)

// FAULT: during a partition longer than the member-lost timeout the agent
// is restarted again and again (a crash-looping Deployment). A restart is
// not a renewal: every incarnation counts from the last renewal that
// reached the hub, so the copy is fenced on time and stays fenced, and the
// hub never starts a second copy. When the link heals, the copy carries on.
func TestFaultAgentRestartsDuringPartition(t *testing.T) {
	ns := namespace(t, "fault-restarts")
	_, from, _ := placeRunning(t, ns, "r")
	mem := env.members[from]
	mem.proxy.Cut()
	cut := time.Now()
	healed := false
	t.Cleanup(func() {
		if !healed {
			_ = mem.proxy.Heal()
		}
		if mem.currentAgent() == nil {
			must(t, mem.startAgent())
		}
	})

	// Restart every fenceTimeout/2, so no incarnation lives long enough to
	// fence by counting from its own start.
	restarts := 0
	for time.Since(cut) < memberLostTimeout+2*fenceTimeout {
		time.Sleep(fenceTimeout / 2)
		must(t, mem.stopAgent())
		must(t, mem.startAgent())
		restarts++
		if time.Since(cut) > fenceTimeout+2*time.Second {
			if c := memberJobSet(t, from, ns, "r"); c == nil || !c.IsSuspended() {
				t.Fatalf("%s after the cut and %d restarts: the copy on %s is not fenced", time.Since(cut).Round(100*time.Millisecond), restarts, from)
			}
		}
		if cur := hubJobSet(t, ns, "r"); placedOn(cur) != from || epochOf(cur) != 1 {
			t.Fatalf("moved during the partition: %+v", cur.Status.Fleet)
		}
	}
	t.Logf("%d agent restarts during a %s partition", restarts, time.Since(cut).Round(time.Second))
	must(t, mem.proxy.Heal())
	healed = true
	waitCopyRunning(t, from, ns, "r")
}
