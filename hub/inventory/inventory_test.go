package inventory

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// TestFrozenCacheIsNoProofOfSilence: a hub whose cache stopped moving (it
// was frozen, or cut off from its API server) reads a member's Lease live
// before calling the member stale or lost.
func TestFrozenCacheIsNoProofOfSilence(t *testing.T) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clusterinventory.AddToScheme(scheme))
	profile := &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"},
		Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
		Status: clusterinventory.ClusterProfileStatus{Conditions: []metav1.Condition{
			{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionTrue}}},
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace("m1"), Name: fleet.HeartbeatLeaseName}}
	cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(profile, lease.DeepCopy()).Build()
	live := fake.NewClientBuilder().WithScheme(scheme).WithObjects(profile, lease.DeepCopy()).Build()
	clock := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	inv := New(cache, fleet.DefaultInventoryNamespace, Options{
		HeartbeatTimeout: 30 * time.Second, MemberLostTimeout: time.Minute, LiveReader: live, Clock: clock,
	})
	ctx := context.Background()
	member := func() Member {
		t.Helper()
		ms, err := inv.Members(ctx)
		if err != nil || len(ms) != 1 {
			t.Fatalf("Members = %v, %v", ms, err)
		}
		return ms[0]
	}
	if m := member(); !m.HeartbeatFresh {
		t.Fatalf("a member seen now is fresh: %+v", m)
	}

	// The hub freezes for two minutes; the agent keeps renewing, but only
	// the API server knows: the cache still holds the old Lease.
	clock.Step(2 * time.Minute)
	renewed := &coordinationv1.Lease{}
	if err := live.Get(ctx, client.ObjectKeyFromObject(lease), renewed); err != nil {
		t.Fatal(err)
	}
	renewed.Spec.HolderIdentity = ptr.To("m1/agent")
	if err := live.Update(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if m := member(); !m.HeartbeatFresh || m.Lost(time.Minute) {
		t.Errorf("a renewal the cache has not shown yet must keep the member fresh: %+v", m)
	}

	// Really silent: lost, once the live read says so too.
	clock.Step(2 * time.Minute)
	if m := member(); !m.Lost(time.Minute) {
		t.Errorf("a member silent for 2m (live) must be lost: %+v", m)
	}
}
