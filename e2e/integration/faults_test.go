package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// The fault matrix of the Safety issue, the rows that need only time and
// process control. Each holds under the default policy (no second copy
// without proof the first stopped); a sampler checks every 100ms that at
// most one member runs a copy. Rows that take minutes run only with
// FLEET_FAULTS=1 (`make test-faults`).

// placeRunning submits a JobSet (one restart allowed, so a move does not
// fail it), waits until its copy runs, and starts the sampler.
func placeRunning(t *testing.T, ns, name string, annotations ...string) (*jobset.JobSet, string, *sampler) {
	t.Helper()
	js := newJobSet(ns, name, 1, "100m", annotations...)
	js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 3}
	create(t, js)
	js, m := waitPlaced(t, ns, name)
	waitCopyRunning(t, m, ns, name)
	s := startSampler(ns, name)
	t.Cleanup(func() {
		s.stop()
		for _, v := range s.violations() {
			t.Error(v)
		}
	})
	return js, m, s
}

func waitCopyRunning(t *testing.T, member, ns, name string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, "copy of "+ns+"/"+name+" running on "+member, func() error {
		running, state, err := copyRunning(context.Background(), member, ns, name)
		if err != nil || !running {
			return fmt.Errorf("%s: %s %v", member, state, err)
		}
		return nil
	})
}

// setOutOfService labels (or unlabels) a member's ClusterProfile, as an
// operator confirming nothing of the fleet runs there.
func setOutOfService(t *testing.T, member string, on bool) {
	t.Helper()
	testenv.Eventually(t, time.Minute, fmt.Sprintf("out-of-service=%t on %s", on, member), func() error {
		p := &clusterinventory.ClusterProfile{}
		if err := env.hub.Client.Get(context.Background(), types.NamespacedName{Namespace: inventoryNS, Name: member}, p); err != nil {
			return err
		}
		if on {
			if p.Labels == nil {
				p.Labels = map[string]string{}
			}
			p.Labels[fleet.OutOfServiceLabel] = "true"
		} else {
			delete(p.Labels, fleet.OutOfServiceLabel)
		}
		return env.hub.Client.Update(context.Background(), p)
	})
}

// stopCopyByHand deletes a member copy as an operator with access to the
// member would, when its agent is gone: in the foreground, then dropping
// the agent's report finalizer nobody will remove.
func stopCopyByHand(t *testing.T, member, ns, name string) {
	t.Helper()
	c := env.members[member].cluster.Client
	testenv.Eventually(t, time.Minute, "copy of "+ns+"/"+name+" on "+member+" gone", func() error {
		js := &jobset.JobSet{}
		err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, js)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		case js.DeletionTimestamp == nil:
			if err := c.Delete(context.Background(), js, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
				return err
			}
			return fmt.Errorf("deleting")
		}
		if len(memberJobs(t, member, ns, name)) == 0 {
			js.Finalizers = nil
			if err := c.Update(context.Background(), js); err != nil {
				return err
			}
		}
		return fmt.Errorf("still there")
	})
}

// awaitingFence waits for the hub to say the JobSet waits for proof.
func awaitingFence(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, ns+"/"+name+" awaits a confirmed fence", func() error {
		c := condition(hubJobSet(t, ns, name), fleet.ConditionMemberStatusStale)
		// The message names the proof an operator can give: the
		// out-of-service label for a member still in the fleet, unjoin's
		// statement for one that left it.
		if c == nil || c.Reason != fleet.ReasonAwaitingFence {
			return fmt.Errorf("MemberStatusStale %+v", c)
		}
		if !strings.Contains(c.Message, fleet.OutOfServiceLabel) && !strings.Contains(c.Message, membership.ConfirmCopiesStoppedFlag) {
			return fmt.Errorf("MemberStatusStale names no proof an operator can give: %+v", c)
		}
		return nil
	})
}

// staysOn checks, for d, that the JobSet stays placed on member, epoch
// unchanged, with no copy anywhere else.
func staysOn(t *testing.T, ns, name, member string, epoch int64, d time.Duration) {
	t.Helper()
	testenv.Consistently(t, d, fmt.Sprintf("%s placed on %s at epoch %d, no copy elsewhere", name, member, epoch), func() error {
		cur := hubJobSet(t, ns, name)
		if placedOn(cur) != member || epochOf(cur) != epoch {
			return fmt.Errorf("moved without proof the copy on %s stopped: %+v", member, cur.Status.Fleet)
		}
		if memberJobSet(t, env.other(member), ns, name) != nil {
			return fmt.Errorf("a copy appeared on %s", env.other(member))
		}
		return nil
	}, testenv.Every(200*time.Millisecond))
}

// FAULT: the agent goes silent for longer than the member-lost timeout,
// killed (kill -9) or frozen (kill -STOP), while its copy keeps running
// (kubelets need no agent). Nobody stopped the copy, so the hub waits;
// once an operator stops it and marks the member out of service, exactly
// one copy runs, on the other member. The agent that comes back, started
// again or thawed, runs nothing of the old epoch.
func TestFaultSilentAgentWaitsForOperator(t *testing.T) {
	for _, tc := range []struct {
		name            string
		silence, revive func(*agentProcess) error
	}{
		{"kill-9", func(a *agentProcess) error { a.process().Kill(); return nil }, (*agentProcess).start},
		{"kill-STOP",
			func(a *agentProcess) error { return a.process().Signal(syscall.SIGSTOP) },
			func(a *agentProcess) error { return a.process().Signal(syscall.SIGCONT) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t, "fault-silent")
			_, from, _ := placeRunning(t, ns, "d")
			to := env.other(from)
			a := env.members[from].runAgentProcess(t, agentProcessOptions{})
			// Swapping the in-process agent for the process can take longer
			// than the fence timeout on a loaded machine; the new process
			// then fences at start (as it must) and resumes the copy once it
			// leads. Silence it only once the copy runs again.
			waitCopyRunning(t, from, ns, "d")
			must(t, tc.silence(a))
			t.Cleanup(func() { setOutOfService(t, from, false) })

			awaitingFence(t, ns, "d")
			staysOn(t, ns, "d", from, 1, memberLostTimeout+2*time.Second)
			waitCopyRunning(t, from, ns, "d") // nobody stopped it: the reason to wait

			stopCopyByHand(t, from, ns, "d")
			setOutOfService(t, from, true)
			testenv.Eventually(t, time.Minute, "moved to "+to, func() error {
				if cur := hubJobSet(t, ns, "d"); placedOn(cur) != to || epochOf(cur) != 2 || cur.Status.Restarts != 1 {
					return fmt.Errorf("status.fleet %+v restarts %d", cur.Status.Fleet, cur.Status.Restarts)
				}
				return nil
			})
			waitCopyRunning(t, to, ns, "d")

			// The agent comes back: nothing of the old epoch runs again.
			setOutOfService(t, from, false)
			must(t, tc.revive(a))
			testenv.Consistently(t, 3*time.Second, "no copy back on "+from, func() error {
				if err := a.process().Exited(); err != nil {
					return err
				}
				if c := memberJobSet(t, from, ns, "d"); c != nil {
					return fmt.Errorf("a copy is back on %s: epoch %s", from, c.Labels[fleet.EpochLabel])
				}
				return nil
			})
		})
	}
}

// FAULT: the member's kube-apiserver is down (killed) for 1.5 times the
// member-lost timeout. Its pods keep running. Its agent, installed with
// leader election on that apiserver, loses it, exits and crash-loops until
// the apiserver returns; the hub hears nothing and, with no proof that the
// copy stopped, waits. When the apiserver is back, the restarted agent
// counts from its persisted last renewal, reconnects, and the copy carries
// on where it ran: never two copies.
func TestFaultMemberAPIServerDown(t *testing.T) {
	ns := namespace(t, "fault-apiserver")
	_, from, _ := placeRunning(t, ns, "a")
	mem := env.members[from]
	a := mem.runAgentProcess(t, agentProcessOptions{leaderElection: true, restart: true})
	must(t, mem.cluster.KillAPIServer())
	down := true
	t.Cleanup(func() {
		if down {
			must(t, mem.cluster.RestartAPIServer())
		}
	})

	staysOn(t, ns, "a", from, 1, memberLostTimeout*3/2)
	must(t, mem.cluster.RestartAPIServer())
	down = false
	waitCopyRunning(t, from, ns, "a")
	testenv.Eventually(t, time.Minute, "fresh again on "+from, func() error {
		cur := hubJobSet(t, ns, "a")
		if c := condition(cur, fleet.ConditionMemberStatusStale); placedOn(cur) != from || epochOf(cur) != 1 || c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("status.fleet %+v, MemberStatusStale %+v", cur.Status.Fleet, c)
		}
		return nil
	})
	// The premise: with its leader-election Lease unreachable, the agent
	// gave up leadership and exited; it was started again.
	if a.restarts() == 0 {
		t.Error("the agent never exited while its member's apiserver was down")
	}
	t.Logf("the agent was started %d more times while the apiserver was down", a.restarts())
}

// FAULT: the hub is frozen (kill -STOP) for 1.5 times the member-lost
// timeout while the members keep renewing. Thawed, its timers fire before
// its watches catch up: it must not take the time it slept for the
// members' silence. No member is lost and nothing moves, even for a JobSet
// that opted into at-least-once failover.
func TestFaultHubFrozenNoFalseLoss(t *testing.T) {
	hub := env.runHubProcess(t)
	ns := namespace(t, "fault-hub-frozen")
	_, from, _ := placeRunning(t, ns, "h", fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce)
	must(t, hub.Signal(syscall.SIGSTOP))
	time.Sleep(memberLostTimeout * 3 / 2)
	must(t, hub.Signal(syscall.SIGCONT))
	staysOn(t, ns, "h", from, 1, memberLostTimeout)
	waitCopyRunning(t, from, ns, "h")
	must(t, hub.Exited())
}

// FAULT: the hub is cut off from its API server (as good as frozen) for
// twice the member-lost timeout, while the members keep renewing. On its
// return it must not take its stale view for silence: no member is lost,
// nothing moves — even for a JobSet that opted into at-least-once failover.
func TestFaultHubCutOffNoFalseLoss(t *testing.T) {
	ns := namespace(t, "fault-hub")
	_, from, _ := placeRunning(t, ns, "h", fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce)
	env.hubProxy.Cut()
	time.Sleep(2 * memberLostTimeout)
	must(t, env.hubProxy.Heal())
	staysOn(t, ns, "h", from, 1, memberLostTimeout)
	waitCopyRunning(t, from, ns, "h")
}

// FAULT: during a partition the member's ClusterProfile is deleted. A
// missing profile proves nothing about the copy: no second copy runs
// before a fence is confirmed; when the member is back, it carries on.
func TestFaultProfileDeletedDuringPartition(t *testing.T) {
	ns := namespace(t, "fault-profile")
	_, from, _ := placeRunning(t, ns, "p")
	mem := env.members[from]
	mem.proxy.Cut()
	healed := false
	t.Cleanup(func() {
		if !healed {
			_ = mem.proxy.Heal()
		}
	})
	must(t, env.hub.Client.Delete(context.Background(), &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: inventoryNS, Name: from}}))
	awaitingFence(t, ns, "p")
	staysOn(t, ns, "p", from, 1, memberLostTimeout+2*time.Second)

	// The member joins again and its link heals: the JobSet carries on there.
	spec := memberSpecs[0]
	for _, s := range memberSpecs {
		if s.name == from {
			spec = s
		}
	}
	_, err := membership.Join(context.Background(), env.hub.Client, mem.cluster.Client, membership.Options{
		ClusterName: from, Labels: spec.labels, HubServerURL: "https://" + mem.proxy.Addr, HubCAData: env.hub.Config.CAData,
		SkipCRDs: true,
	})
	must(t, err)
	must(t, mem.proxy.Heal())
	healed = true
	waitCopyRunning(t, from, ns, "p")
	testenv.Eventually(t, time.Minute, "fresh again on "+from, func() error {
		cur := hubJobSet(t, ns, "p")
		if c := condition(cur, fleet.ConditionMemberStatusStale); placedOn(cur) != from || epochOf(cur) != 1 || c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("status.fleet %+v, MemberStatusStale %+v", cur.Status.Fleet, c)
		}
		return nil
	})
}

// FAULT: the hub's finalizer is removed by hand and the JobSet deleted,
// then a JobSet of the same name is created: the old copy is collected
// (its dispatch never adopted), and the new JobSet runs once, after it.
func TestFaultFinalizerRemovedSameNameRecreated(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "fault-finalizer")
	old, from, _ := placeRunning(t, ns, "f")
	cur := hubJobSet(t, ns, "f")
	testenv.Eventually(t, time.Minute, "finalizer removed by hand", func() error {
		cur = hubJobSet(t, ns, "f")
		cur.Finalizers = nil
		return env.hub.Client.Update(ctx, cur)
	})
	must(t, env.hub.Client.Delete(ctx, cur))
	testenv.Eventually(t, time.Minute, "old hub JobSet gone", func() error {
		err := env.hub.Client.Get(ctx, client.ObjectKeyFromObject(cur), &jobset.JobSet{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})

	js := newJobSet(ns, "f", 1, "100m")
	create(t, js)
	renewed, m := waitPlaced(t, ns, "f")
	if renewed.UID == old.UID {
		t.Fatal("the JobSet was not re-created")
	}
	testenv.Eventually(t, time.Minute, "old dispatches and copy collected", func() error {
		if ds := dispatchesOf(t, old.UID); len(ds) > 0 {
			return fmt.Errorf("%d dispatches of the old JobSet", len(ds))
		}
		if c := memberJobSet(t, from, ns, "f"); c != nil && c.Labels[fleet.OriginUIDLabel] == string(old.UID) {
			return fmt.Errorf("old copy still on %s", from)
		}
		return nil
	})
	waitCopyRunning(t, m, ns, "f")
	if c := memberJobSet(t, m, ns, "f"); c == nil || c.Labels[fleet.OriginUIDLabel] != string(renewed.UID) {
		t.Errorf("copy on %s is not the new JobSet's: %v", m, c)
	}
}

// FAULT: partitions that heal within ±1s of the hub's member-lost timeout,
// 20 runs (half of them with a JobSet that opted into at-least-once
// failover, the case the timing matters for): zero overlaps.
func TestFaultHealAroundLostTimeout(t *testing.T) {
	if os.Getenv("FLEET_FAULTS") == "" {
		t.Skip("minutes long: runs with FLEET_FAULTS=1 (make test-faults)")
	}
	// One namespace for every run: its cleanup (all copies gone) is waited
	// for once, at the end.
	ns := namespace(t, "fault-heal")
	for run := range 20 {
		offset := time.Duration(run%5-2) * 500 * time.Millisecond // -1s .. +1s
		var annotations []string
		if run%2 == 1 {
			annotations = []string{fleet.OnMemberLostAnnotation, fleet.OnMemberLostAtLeastOnce}
		}
		name := fmt.Sprintf("x-%02d", run)
		t.Run(fmt.Sprintf("run-%02d-offset-%s", run, offset), func(t *testing.T) {
			_, from, _ := placeRunning(t, ns, name, annotations...)
			p := env.members[from].proxy
			p.Cut()
			// The hub counts from the last renewal it saw, up to one
			// heartbeat interval before the cut.
			time.Sleep(memberLostTimeout + offset)
			must(t, p.Heal())
			// Let both sides settle: the sampler watches throughout.
			testenv.Eventually(t, time.Minute, "one copy running", func() error {
				cur := hubJobSet(t, ns, name)
				running, state, err := copyRunning(context.Background(), placedOn(cur), ns, name)
				if err != nil || !running {
					return fmt.Errorf("%s: %s %v", placedOn(cur), state, err)
				}
				return nil
			})
			must(t, client.IgnoreNotFound(env.hub.Client.Delete(context.Background(), hubJobSet(t, ns, name))))
		})
	}
}
