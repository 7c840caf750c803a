package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestAgentRestartWhileHubUnreachable cuts the agent off the hub, restarts
// it while the hub stays unreachable, and checks that
//   - the new process fences at lastRenewal+fenceTimeout, the renewal the old
//     process recorded on the member, not at its own start+fenceTimeout;
//   - meanwhile the member's JobSet controller keeps running JobSets (child
//     Jobs are created) for longer than the dispatch controller's cache-sync
//     timeout, and the process does not exit;
//   - once the hub is back the agent syncs, unfences and resumes its copy.
func TestAgentRestartWhileHubUnreachable(t *testing.T) {
	const (
		fence     = 6 * time.Second
		syncLimit = 2 * time.Second // the dispatch controller's cache-sync timeout, shortened
	)
	clusters := testenv.StartN(t, "restart-hub", "restart-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	hubURL, err := url.Parse(hub.Config.Host)
	must(t, err)
	proxy, err := testenv.StartProxy(hubURL.Host)
	must(t, err)
	t.Cleanup(proxy.Cut)
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName: clusterName, HubServerURL: "https://" + proxy.Addr, HubCAData: hub.Config.CAData, SkipCRDs: true,
	})
	must(t, err)
	agentCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)
	options := func(o *agent.Options) {
		o.FenceTimeout = fence
		o.CacheSyncTimeout = syncLimit
		o.HubWaitLogInterval = time.Second
	}

	a := startAgent(t, t.Cleanup, member, agentCfg, options)
	d := newDispatch("team-a", "train", 1)
	must(t, hub.Client.Create(ctx, d))
	waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
		if js.IsSuspended() {
			return errors.New("suspended")
		}
		return nil
	})

	proxy.Cut()
	// The last renewal the old process recorded stops moving.
	var recorded time.Time
	testenv.Eventually(t, 10*time.Second, "the recorded renewal to stop moving", func() error {
		lease := &coordinationv1.Lease{}
		if err := member.Client.Get(ctx, client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.LastRenewalLeaseName}, lease); err != nil {
			return err
		}
		at := lease.Spec.RenewTime.Time
		if at.IsZero() || !at.Equal(recorded) || time.Since(at) < time.Second {
			recorded = at
			return fmt.Errorf("recorded renewal still moving: %s", at)
		}
		return nil
	})
	t.Logf("last recorded renewal %s ago", time.Since(recorded).Round(time.Millisecond))
	a.stop()
	// Restart with most of the fence timeout already spent, as a crash
	// loop would.
	time.Sleep(time.Until(recorded.Add(fence / 2)))
	started := time.Now()
	a = startAgent(t, t.Cleanup, member, agentCfg, options)

	var suspendedAt time.Time
	testenv.Eventually(t, 3*fence, "the copy suspended", func() error {
		js := waitMemberJobSet(t, member.Client, "team-a", "train", nil)
		if !js.IsSuspended() {
			return errors.New("not suspended")
		}
		suspendedAt = time.Now()
		return nil
	})
	if deadline := recorded.Add(fence + 1500*time.Millisecond); suspendedAt.After(deadline) {
		t.Errorf("fenced %s after the recorded renewal (%s after the restart): want about the fence timeout %s from the recorded renewal, not from the start",
			suspendedAt.Sub(recorded).Round(time.Millisecond), suspendedAt.Sub(started).Round(time.Millisecond), fence)
	}
	// Measured on the member apiserver's stamps, whole seconds rounded
	// towards fencing early by at most two of them.
	if suspendedAt.Before(recorded.Add(fence - 2*agent.StampResolution - 300*time.Millisecond)) {
		t.Errorf("fenced %s after the recorded renewal, before the fence timeout %s", suspendedAt.Sub(recorded), fence)
	}
	if !a.Fenced() {
		t.Error("restarted agent does not report itself fenced")
	}

	// The member's own JobSet controller works on, past the old cache-sync
	// timeout, and the process stays up.
	time.Sleep(time.Until(started.Add(2 * syncLimit)))
	local := memberJobSet("team-local", "local").Obj()
	must(t, member.Client.Create(ctx, namespace("team-local")))
	must(t, member.Client.Create(ctx, local))
	testenv.Eventually(t, 20*time.Second, "2 child Jobs of the local JobSet", func() error {
		if n := len(memberJobs(t, member.Client, "team-local", "local")); n != 2 {
			return fmt.Errorf("%d child Jobs of a local JobSet while the hub is unreachable", n)
		}
		return nil
	})
	select {
	case <-a.done:
		t.Fatal("the agent's process exited while the hub was unreachable")
	default:
	}
	if a.HubSynced() {
		t.Error("hub cache reported synced while the hub is unreachable")
	}

	must(t, proxy.Heal())
	testenv.Eventually(t, 30*time.Second, "the agent synced with the hub and unfenced", func() error {
		if !a.HubSynced() || a.Fenced() {
			return fmt.Errorf("hub synced %v, fenced %v", a.HubSynced(), a.Fenced())
		}
		return nil
	})
	waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
		if js.IsSuspended() {
			return errors.New("still suspended after the hub came back")
		}
		return nil
	})
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
