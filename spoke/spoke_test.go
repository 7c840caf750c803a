package spoke_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke"
)

// An agent installed before its member joined the fleet runs JobSets as a
// standalone controller while it waits for join's Secret, and becomes the
// fleet agent, heartbeat and all, once join wrote it: no restart needed.
func TestAgentInstalledBeforeJoin(t *testing.T) {
	clusters := testenv.StartN(t, "spoke-hub", "spoke-member")
	hub, member := clusters[0], clusters[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	mgr, err := ctrl.NewManager(member.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	must(t, err)
	opts := spoke.DefaultOptions()
	opts.HubKubeconfigSecret = fleet.SystemNamespace + "/" + fleet.HubKubeconfigSecret
	opts.Agent.HeartbeatInterval = 500 * time.Millisecond
	_, err = spoke.Setup(mgr, opts)
	must(t, err)
	must(t, spoke.SetupAgentOnceConnected(mgr, opts, nil))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		must(t, <-done)
	}()

	// Not joined yet: a JobSet applied on the member runs there.
	js := jstesting.MakeJobSet("default", "local").ReplicatedJob(
		jstesting.MakeReplicatedJob("w").Replicas(2).Parallelism(1).Completions(1).
			RestartPolicy(corev1.RestartPolicyNever).Container("main", "busybox").Obj()).Obj()
	must(t, member.Client.Create(ctx, js))
	testenv.Eventually(t, time.Minute, "the JobSet's Jobs before join", func() error {
		var jobs batchv1.JobList
		if err := member.Client.List(ctx, &jobs, client.InNamespace("default"), client.MatchingLabels{jobset.JobSetNameKey: "local"}); err != nil {
			return err
		}
		if len(jobs.Items) != 2 {
			return fmt.Errorf("%d Jobs", len(jobs.Items))
		}
		return nil
	})

	_, err = membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName:  "late",
		HubServerURL: hub.Config.Host,
		HubCAData:    hub.Config.CAData,
		SkipCRDs:     true,
	})
	must(t, err)
	testenv.Eventually(t, time.Minute, "the agent's heartbeat on the hub after join", func() error {
		lease := &coordinationv1.Lease{}
		if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.MemberNamespace("late"), Name: fleet.HeartbeatLeaseName}, lease); err != nil {
			return err
		}
		if lease.Spec.RenewTime == nil || time.Since(lease.Spec.RenewTime.Time) > 5*time.Second {
			return fmt.Errorf("not renewed: %v", lease.Spec.RenewTime)
		}
		return nil
	})
	select {
	case err := <-done:
		done <- err
		t.Fatalf("the manager stopped: %v", err)
	default:
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
