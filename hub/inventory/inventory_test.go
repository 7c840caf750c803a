package inventory

import (
	"context"
	"sync"
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

// frozenHub is an inventory over one member, m1, whose Lease the cache and
// the API server (apiserver, read through wrapLive) both hold, at a fake
// clock.
func frozenHub(wrapLive func(client.Reader) client.Reader) (*Inventory, client.Client, *clocktesting.FakeClock, *coordinationv1.Lease) {
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
	apiserver := fake.NewClientBuilder().WithScheme(scheme).WithObjects(profile, lease.DeepCopy()).Build()
	clock := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	inv := New(cache, fleet.DefaultInventoryNamespace, Options{
		HeartbeatTimeout: 30 * time.Second, MemberLostTimeout: time.Minute, LiveReader: wrapLive(apiserver), Clock: clock,
	})
	return inv, apiserver, clock, lease
}

// renew is the agent renewing m1's Lease, which only the API server sees.
func renew(t *testing.T, apiserver client.Client, lease *coordinationv1.Lease) {
	t.Helper()
	renewed := &coordinationv1.Lease{}
	if err := apiserver.Get(context.Background(), client.ObjectKeyFromObject(lease), renewed); err != nil {
		t.Fatal(err)
	}
	renewed.Spec.HolderIdentity = ptr.To("m1/agent")
	if err := apiserver.Update(context.Background(), renewed); err != nil {
		t.Fatal(err)
	}
}

// TestFrozenCacheIsNoProofOfSilence: a hub whose cache stopped moving (it
// was frozen, or cut off from its API server) reads a member's Lease live
// before calling the member stale or lost.
func TestFrozenCacheIsNoProofOfSilence(t *testing.T) {
	inv, live, clock, lease := frozenHub(func(r client.Reader) client.Reader { return r })
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
	renew(t, live, lease)
	if m := member(); !m.HeartbeatFresh || m.Lost(time.Minute) {
		t.Errorf("a renewal the cache has not shown yet must keep the member fresh: %+v", m)
	}

	// Really silent: lost, once the live read says so too.
	clock.Step(2 * time.Minute)
	if m := member(); !m.Lost(time.Minute) {
		t.Errorf("a member silent for 2m (live) must be lost: %+v", m)
	}
}

// firstReadBlocks holds its first Get until release is closed.
type firstReadBlocks struct {
	client.Reader
	once             sync.Once
	entered, release chan struct{}
}

func (r *firstReadBlocks) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	first := false
	r.once.Do(func() { first = true })
	if first {
		close(r.entered)
		<-r.release
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

// TestLiveReadInFlightIsNoProofOfSilence: right after a thaw the inventory
// controller and the dispatcher both ask about the same silent-looking
// member. One live read is still in flight when the other asks: the other
// must not take the unconfirmed cache for silence (seen in
// TestFaultHubFrozenNoFalseLoss: an at-least-once JobSet moved).
func TestLiveReadInFlightIsNoProofOfSilence(t *testing.T) {
	var live *firstReadBlocks
	inv, apiserver, clock, lease := frozenHub(func(r client.Reader) client.Reader {
		live = &firstReadBlocks{Reader: r, entered: make(chan struct{}), release: make(chan struct{})}
		return live
	})
	ctx := context.Background()
	if _, err := inv.Members(ctx); err != nil {
		t.Fatal(err)
	}

	// Frozen for two minutes while the agent renewed.
	clock.Step(2 * time.Minute)
	renew(t, apiserver, lease)

	first := make(chan error, 1)
	go func() {
		_, err := inv.Members(ctx)
		first <- err
	}()
	<-live.entered // the first live read is in flight
	ms, err := inv.Members(ctx)
	close(live.release)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Members = %v, %v", ms, err)
	}
	if m := ms[0]; !m.HeartbeatFresh || m.Lost(time.Minute) {
		t.Errorf("judged on the cache while a live read was in flight: %+v", m)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}
