package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// `unjoin --keep-workloads` leaves the member's copy running, so it gives
// the hub no proof: with the real dispatcher running and the member
// namespace really deleted by the hub's namespace controller, the JobSet
// stays where it was, past the member-lost timeout, and says it awaits a
// fence. Once the operator stopped the copy by hand and ran `unjoin
// --confirm-copies-stopped`, it runs on the other member, once. The
// member joins again at the end, as the other tests expect.
//
// Here rather than with its own clusters: the shared fleet already runs
// the hub's dispatcher, two members with kube-controller-manager and real
// agents with short timeouts; it only needed kube-controller-manager on
// the hub too (harness_test.go).
func TestUnjoinKeepWorkloadsWaitsForProof(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "unjoin-keep")
	js, from, _ := placeRunning(t, ns, "k")
	to := env.other(from)
	mem := env.members[from]
	memberNS := fleet.MemberNamespace(from)
	rejoined := false
	t.Cleanup(func() {
		if !rejoined {
			// The test failed half-way: give the proof it would have.
			stopCopyByHand(t, from, ns, "k")
			must(t, membership.Unjoin(ctx, env.hub.Client, nil, membership.Options{ClusterName: from, ConfirmCopiesStopped: true}))
			rejoin(t, from)
		}
	})

	// The operator uninstalls the agent and unjoins, keeping the copies.
	must(t, mem.stopAgent())
	must(t, membership.Unjoin(ctx, env.hub.Client, mem.cluster.Client, membership.Options{ClusterName: from, KeepWorkloads: true}))

	staysOn(t, ns, "k", from, 1, memberLostTimeout+2*time.Second)
	waitCopyRunning(t, from, ns, "k") // nobody stopped it: the reason to wait
	testenv.Eventually(t, time.Minute, ns+"/k awaits a fence", func() error {
		c := condition(hubJobSet(t, ns, "k"), fleet.ConditionMemberStatusStale)
		if c == nil || c.Reason != fleet.ReasonAwaitingFence {
			return fmt.Errorf("MemberStatusStale %+v", c)
		}
		return nil
	})
	// The premise: the namespace controller is at work, and only the
	// agent's finalizer, held for lack of proof, keeps the dispatch.
	testenv.Eventually(t, time.Minute, memberNS+" terminating, its dispatch held", func() error {
		nsObj := &corev1.Namespace{}
		if err := env.hub.Client.Get(ctx, types.NamespacedName{Name: memberNS}, nsObj); err != nil {
			return err
		}
		ds := dispatchesOf(t, js.UID)
		if nsObj.DeletionTimestamp == nil || len(ds) != 1 || ds[0].DeletionTimestamp == nil || !slices.Contains(ds[0].Finalizers, fleet.AgentFinalizer) {
			return fmt.Errorf("namespace deleting=%t, dispatches %d", nsObj.DeletionTimestamp != nil, len(ds))
		}
		return nil
	})

	stopCopyByHand(t, from, ns, "k")
	must(t, membership.Unjoin(ctx, env.hub.Client, nil, membership.Options{ClusterName: from, ConfirmCopiesStopped: true}))
	testenv.Eventually(t, time.Minute, "moved to "+to, func() error {
		if cur := hubJobSet(t, ns, "k"); placedOn(cur) != to || epochOf(cur) != 2 || cur.Status.Restarts != 1 {
			return fmt.Errorf("status.fleet %+v restarts %d", cur.Status.Fleet, cur.Status.Restarts)
		}
		return nil
	})
	waitCopyRunning(t, to, ns, "k")
	testenv.Eventually(t, 2*time.Minute, memberNS+" gone", func() error {
		err := env.hub.Client.Get(ctx, types.NamespacedName{Name: memberNS}, &corev1.Namespace{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	// Exactly once: one dispatch, one copy (the sampler checks the rest).
	testenv.Consistently(t, 3*time.Second, "one copy, on "+to, func() error {
		ds := dispatchesOf(t, js.UID)
		if len(ds) != 1 || ds[0].Namespace != fleet.MemberNamespace(to) || ds[0].Spec.Epoch != 2 {
			return fmt.Errorf("%d dispatches", len(ds))
		}
		if cur := hubJobSet(t, ns, "k"); placedOn(cur) != to || epochOf(cur) != 2 {
			return fmt.Errorf("status.fleet %+v", cur.Status.Fleet)
		}
		return nil
	})

	rejoin(t, from)
	rejoined = true
	// The member works again.
	create(t, newJobSet(ns, "back", 1, "100m", fleet.PinnedClusterAnnotation, from))
	if _, m := waitPlaced(t, ns, "back"); m != from {
		t.Errorf("pinned to %s, placed on %s", from, m)
	}
	waitCopyRunning(t, from, ns, "back")
}

// rejoin joins an unjoined member again, as at the fleet's start, and runs
// its agent with the new credentials.
func rejoin(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	mem := env.members[name]
	var labels map[string]string
	for _, s := range memberSpecs {
		if s.name == name {
			labels = s.labels
		}
	}
	must(t, mem.stopAgent())
	var kubeconfig []byte
	// Until the namespaces the unjoin deleted are gone.
	testenv.Eventually(t, 2*time.Minute, "join "+name+" again", func() error {
		var err error
		kubeconfig, err = membership.Join(ctx, env.hub.Client, mem.cluster.Client, membership.Options{
			ClusterName: name, Labels: labels, HubServerURL: "https://" + mem.proxy.Addr, HubCAData: env.hub.Config.CAData, SkipCRDs: true,
		})
		return err
	})
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	must(t, err)
	mem.mu.Lock()
	mem.hubKubeconfig, mem.hubConfig, mem.hubClient = kubeconfig, cfg, c
	mem.mu.Unlock()
	must(t, mem.startAgent())
	testenv.Eventually(t, 2*time.Minute, "members ready", func() error { return env.checkMembersReady(ctx) })
}
