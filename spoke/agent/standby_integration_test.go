package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/spoke"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestStandbyFencesWithoutLeadership runs the member side as cmd/agent
// does (leader election on), on a replica that never leads: another holds
// the leader-election Lease. The hub is never reachable, so only the
// renewal recorded on the member tells how long ago the fleet last heard
// from this member. The replica
//   - does nothing while nothing is recorded (an agent that never renewed
//     runs nothing of the fleet);
//   - suspends the fleet's running copy once the recorded renewal is the
//     fence timeout old, measured on the member apiserver's clock, and
//     leaves finished copies and the member's own JobSets alone;
//   - never resumes anything when a renewal is recorded again;
//   - started fresh while the recorded renewal is already too old,
//     suspends the copy within about a tick of its start.
func TestStandbyFencesWithoutLeadership(t *testing.T) {
	const fence = 3 * time.Second
	tick := min(max(fence/10, 100*time.Millisecond), time.Second)
	member := testenv.Start(t, "standby-member")
	ctx := context.Background()
	must(t, member.Client.Create(ctx, namespace(fleet.SystemNamespace)))
	must(t, member.Client.Create(ctx, namespace("team-a")))
	// The name join wrote; the kubeconfig is never read on a replica that
	// does not lead.
	must(t, member.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret},
		Data:       map[string][]byte{fleet.ClusterNameKey: []byte(clusterName)},
	}))
	const electionID = "standby-test-leader"
	now := metav1.NewMicroTime(time.Now())
	must(t, member.Client.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: electionID},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("the-leader-elsewhere"), LeaseDurationSeconds: ptr.To(int32(3600)),
			AcquireTime: &now, RenewTime: &now,
		},
	}))

	copyOf := func(name string) *jobset.JobSet {
		js := memberJobSet("team-a", name).ManagedBy(fleet.ManagedByFleet).Obj()
		js.Annotations = map[string]string{fleet.DispatchAnnotation: memberNS + "/" + fleet.DispatchName("team-a", name)}
		return js
	}
	running := copyOf("train")
	finished := copyOf("done")
	local := memberJobSet("team-a", "local").Obj()
	for _, js := range []*jobset.JobSet{running, finished, local} {
		must(t, member.Client.Create(ctx, js))
	}
	finished.Status.TerminalState = string(jobset.JobSetCompleted)
	must(t, member.Client.Status().Update(ctx, finished))

	suspended := func(name string) bool {
		js := &jobset.JobSet{}
		must(t, member.Client.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: name}, js))
		return js.IsSuspended()
	}
	record := func() time.Time {
		t.Helper()
		key := client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.LastRenewalLeaseName}
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		at := time.Now()
		testenv.Eventually(t, 5*time.Second, "a renewal recorded", func() error {
			switch err := member.Client.Get(ctx, key, lease); {
			case err == nil:
				lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
				at = time.Now()
				return member.Client.Update(ctx, lease)
			case client.IgnoreNotFound(err) == nil:
				lease.Spec.HolderIdentity = ptr.To("the-leader-elsewhere")
				lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
				at = time.Now()
				return member.Client.Create(ctx, lease)
			default:
				return err
			}
		})
		return at
	}
	waitSuspended := func(within time.Duration) time.Time {
		t.Helper()
		var at time.Time
		testenv.Eventually(t, within, "the running copy suspended", func() error {
			if !suspended("train") {
				return errors.New("not suspended")
			}
			at = time.Now()
			return nil
		})
		return at
	}

	replica := startStandbyReplica(t, member, electionID, fence)
	time.Sleep(fence + fence/2)
	if suspended("train") {
		t.Fatal("the copy was suspended although no renewal was ever recorded")
	}

	recorded := record()
	suspendedAt := waitSuspended(3 * fence)
	since := suspendedAt.Sub(recorded)
	// The member apiserver's stamps are whole seconds, rounded towards
	// fencing early by at most two of them.
	if earliest := fence - 2*agent.StampResolution - 300*time.Millisecond; since < earliest {
		t.Errorf("suspended %s after the recorded renewal: before the fence timeout %s", since.Round(time.Millisecond), fence)
	}
	if latest := fence + tick + time.Second; since > latest {
		t.Errorf("suspended %s after the recorded renewal: want within a tick of the fence timeout %s", since.Round(time.Millisecond), fence)
	}
	if suspended("done") || suspended("local") {
		t.Errorf("the standby suspended a finished copy (%v) or a JobSet not of the fleet (%v)", suspended("done"), suspended("local"))
	}

	// A renewal recorded again: the standby resumes nothing.
	recorded = record()
	time.Sleep(fence / 2)
	if !suspended("train") {
		t.Error("the standby resumed the copy once a renewal was recorded again")
	}
	select {
	case <-replica.Elected():
		t.Fatal("the replica became leader: the test must run on one that does not lead")
	default:
	}
	replica.stop()

	// Resumed (as a leader would), then a fresh replica starts with the
	// recorded renewal already past the fence timeout.
	resume := &jobset.JobSet{}
	must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(running), resume))
	resume.Spec.Suspend = ptr.To(false)
	must(t, member.Client.Update(ctx, resume))
	time.Sleep(time.Until(recorded.Add(2 * fence)))
	started := time.Now()
	startStandbyReplica(t, member, electionID, fence)
	if d := waitSuspended(10 * time.Second).Sub(started); d > tick+2*time.Second {
		t.Errorf("a fresh replica suspended the copy %s after its start: want about a tick (%s)", d.Round(time.Millisecond), tick)
	}
}

type standbyReplica struct {
	ctrl.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *standbyReplica) stop() {
	r.cancel()
	<-r.done
}

// startStandbyReplica runs a member manager with leader election on the
// Lease electionID, with the agent added as cmd/agent adds it, until
// stopped or the test ends.
func startStandbyReplica(t *testing.T, member *testenv.Cluster, electionID string, fence time.Duration) *standbyReplica {
	t.Helper()
	mgr, err := ctrl.NewManager(member.Config, ctrl.Options{
		Scheme:                  testenv.Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		LeaderElection:          true,
		LeaderElectionID:        electionID,
		LeaderElectionNamespace: fleet.SystemNamespace,
	})
	must(t, err)
	opts := spoke.DefaultOptions()
	opts.HubKubeconfigSecret = fleet.SystemNamespace + "/" + fleet.HubKubeconfigSecret
	opts.Agent.FenceTimeout = fence
	opts.Agent.HeartbeatInterval = fence / 4
	must(t, spoke.SetupAgentOnceConnected(mgr, opts, nil))
	ctx, cancel := context.WithCancel(context.Background())
	r := &standbyReplica{Manager: mgr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "standby replica stopped: %v\n", err)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.stop()
		}
	})
	return r
}
