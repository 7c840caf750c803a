package membership_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// TestJoinForceRevokesOldCluster: cluster b takes over the name cluster a
// joined with. While a's agent holds dispatches nobody confirmed stopped,
// the takeover is refused (and changes nothing); with the operator's
// confirmation it marks them stopped, deletes and releases them, and a's
// agent token stops authenticating.
func TestJoinForceRevokesOldCluster(t *testing.T) {
	clusters := testenv.StartN(t, "takeover-hub", "takeover-a", "takeover-b")
	hub, a, b := clusters[0], clusters[1], clusters[2]
	ctx := context.Background()
	const hubFinalizer = "test.fleet.jobset.x-k8s.io/hub"
	memberNS := fleet.MemberNamespace("m1")
	opts := membership.Options{ClusterName: "m1", HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true, Force: true}

	oldKubeconfig, err := membership.Join(ctx, hub.Client, a.Client, opts)
	must(t, err)
	oldAgent := clientFor(t, oldKubeconfig, testenv.Scheme())
	oldSA := &corev1.ServiceAccount{}
	must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: memberNS, Name: membership.AgentServiceAccount}, oldSA))

	// What a's agent holds: a running copy, a copy it already reported
	// gone, and a dispatch it never took.
	dispatch := func(name string, agentHeld bool) *fleet.JobSetDispatch {
		d := &fleet.JobSetDispatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: fleet.DispatchName("team", name), Finalizers: []string{hubFinalizer}},
			Spec: fleet.JobSetDispatchSpec{
				Origin: fleet.Origin{Namespace: "team", Name: name, UID: types.UID("uid-" + name)},
				Epoch:  2,
				JobSet: fleet.JobSetTemplate{Spec: jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{oneJob()}}},
			},
		}
		if agentHeld {
			d.Finalizers = append(d.Finalizers, fleet.AgentFinalizer)
		}
		must(t, hub.Client.Create(ctx, d))
		return d
	}
	running, gone, untaken := dispatch("running", true), dispatch("gone", true), dispatch("untaken", false)
	meta.SetStatusCondition(&gone.Status.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue, Reason: "CopyDeleted", Message: "by the agent"})
	must(t, hub.Client.Status().Update(ctx, gone))

	// Refused, naming the dispatch that may run and how to give proof.
	_, err = membership.Join(ctx, hub.Client, b.Client, opts)
	if err == nil || !strings.Contains(err.Error(), running.Name) || !strings.Contains(err.Error(), "--confirm-copies-stopped") ||
		strings.Contains(err.Error(), gone.Name) || strings.Contains(err.Error(), untaken.Name) {
		t.Fatalf("takeover while %s may run: want a refusal naming only it and --confirm-copies-stopped, got %v", running.Name, err)
	}
	t.Logf("refusal: %v", err)
	// ... which changed nothing: a keeps the name and its credentials.
	cp := &clusterinventory.ClusterProfile{}
	must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, cp))
	if cp.Annotations[fleet.ClusterIDAnnotation] != kubeSystemUID(t, a.Client) {
		t.Errorf("refused takeover changed the cluster ID to %s", cp.Annotations[fleet.ClusterIDAnnotation])
	}
	if err := oldAgent.Get(ctx, client.ObjectKeyFromObject(cp), &clusterinventory.ClusterProfile{}); err != nil {
		t.Errorf("refused takeover revoked the old agent: %v", err)
	}

	// With the operator's word, the takeover goes through.
	confirmed := opts
	confirmed.ConfirmCopiesStopped = true
	newKubeconfig, err := membership.Join(ctx, hub.Client, b.Client, confirmed)
	must(t, err)

	testenv.Eventually(t, 30*time.Second, "the old agent's token rejected", func() error {
		err := oldAgent.List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace(memberNS))
		if !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("old agent listing its dispatches: want 401 Unauthorized, got %v", err)
		}
		return nil
	})
	newSA := &corev1.ServiceAccount{}
	must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: memberNS, Name: membership.AgentServiceAccount}, newSA))
	if newSA.UID == oldSA.UID {
		t.Error("the agent's ServiceAccount was not created anew")
	}
	if err := clientFor(t, newKubeconfig, testenv.Scheme()).List(ctx, &fleet.JobSetDispatchList{}, client.InNamespace(memberNS)); err != nil {
		t.Errorf("new agent listing its dispatches: %v", err)
	}

	type state struct {
		Reason        string
		Deleting      bool
		AgentFinalize bool
	}
	stateOf := func(d *fleet.JobSetDispatch) state {
		got := &fleet.JobSetDispatch{}
		must(t, hub.Client.Get(ctx, client.ObjectKeyFromObject(d), got))
		s := state{Deleting: got.DeletionTimestamp != nil, AgentFinalize: slices.Contains(got.Finalizers, fleet.AgentFinalizer)}
		if c := meta.FindStatusCondition(got.Status.Conditions, fleet.DispatchDeleted); c != nil && c.Status == metav1.ConditionTrue {
			s.Reason = c.Reason
			if c.Reason == fleet.ReasonStopConfirmed && !strings.Contains(c.Message, kubeSystemUID(t, a.Client)) {
				t.Errorf("%s: the confirmation does not name the old cluster: %q", d.Name, c.Message)
			}
		}
		return s
	}
	for _, tc := range []struct {
		d    *fleet.JobSetDispatch
		want state
	}{
		// Marked with the operator's statement, deleted and released: the
		// hub may run it again, and the new agent never sees it live.
		{running, state{Reason: fleet.ReasonStopConfirmed, Deleting: true}},
		// Already proven; left to the hub.
		{gone, state{Reason: "CopyDeleted", AgentFinalize: true}},
		// Never started on a: the new cluster may take it.
		{untaken, state{}},
	} {
		if got := stateOf(tc.d); got != tc.want {
			t.Errorf("%s after the takeover: %+v, want %+v", tc.d.Name, got, tc.want)
		}
	}
}
