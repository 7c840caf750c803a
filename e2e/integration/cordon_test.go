package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// `jobset-fleet-agent cordon` takes a member out of rotation: with the
// real dispatcher running, a JobSet already running there stays, new
// JobSets land on the other member, and one pinned to the cordoned member
// waits and says why. `uncordon` puts it back: the pinned JobSet runs.
func TestCordonUncordon(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "cordon")
	_, on, _ := placeRunning(t, ns, "before")
	other := env.other(on)
	opts := membership.Options{ClusterName: on}
	t.Cleanup(func() { must(t, membership.SetRotation(ctx, env.hub.Client, opts, membership.InRotation)) })

	must(t, membership.SetRotation(ctx, env.hub.Client, opts, membership.Cordoned))
	must(t, membership.SetRotation(ctx, env.hub.Client, opts, membership.Cordoned)) // idempotent

	create(t, newJobSet(ns, "pinned", 1, "10m", fleet.PinnedClusterAnnotation, on))
	for i := range 3 {
		name := fmt.Sprintf("new-%d", i)
		create(t, newJobSet(ns, name, 1, "10m"))
		if _, m := waitPlaced(t, ns, name); m != other {
			t.Errorf("%s placed on %s, which is cordoned; want %s", name, m, other)
		}
		// Spread could have chosen the other member anyway: the verdict
		// says the cordon is why.
		testenv.Eventually(t, 30*time.Second, name+"'s placement names the cordon", func() error {
			pd := &clusterinventory.PlacementDecision{}
			if err := env.hub.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pd); err != nil {
				return err
			}
			if why := pd.Annotations[placement.ReasonsAnnotation]; !strings.Contains(why, on+": cordoned by an operator") {
				return fmt.Errorf("placement reasons %q", why)
			}
			return nil
		})
	}
	testenv.Eventually(t, time.Minute, "pinned waits on the cordon", func() error {
		c := condition(hubJobSet(t, ns, "pinned"), fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, on+": cordoned by an operator") {
			return fmt.Errorf("Dispatched %+v", c)
		}
		return nil
	})
	// Cordoning moves nothing: the running JobSet is where it was.
	if cur := hubJobSet(t, ns, "before"); placedOn(cur) != on || epochOf(cur) != 1 {
		t.Errorf("running JobSet moved to %s (epoch %d) by a cordon", placedOn(cur), epochOf(cur))
	}
	waitCopyRunning(t, on, ns, "before")

	must(t, membership.SetRotation(ctx, env.hub.Client, opts, membership.InRotation))
	if _, m := waitPlaced(t, ns, "pinned"); m != on {
		t.Errorf("pinned placed on %s after uncordon, want %s", m, on)
	}
}
