package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// A Kueue installed on a running hub suspends the next queue-named JobSet
// at creation; the hub must hold that JobSet at once, not after its next
// periodic look, and must not ask the apiserver for every other JobSet.
func TestKueueOnHubServedFor(t *testing.T) {
	queued := &jobset.JobSet{}
	queued.Labels = map[string]string{fleet.KueueQueueNameLabel: "team-a"}
	queued.Spec.Suspend = ptr.To(true)
	running := queued.DeepCopy()
	running.Spec.Suspend = ptr.To(false)
	noQueue := &jobset.JobSet{}
	noQueue.Spec.Suspend = ptr.To(true)

	ctx := context.Background()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	installed, looks := false, 0
	var lookErr error
	k := newKueueOnHubWith(clk, func() (bool, error) { looks++; return installed, lookErr })
	if !k.Served() {
		t.Fatal("before the first look the hub must assume Kueue runs")
	}
	k.look(ctx)
	if k.Served() || looks != 1 {
		t.Fatalf("after looking at a hub without Kueue: served %v, looks %d", k.Served(), looks)
	}

	installed = true
	for _, js := range []*jobset.JobSet{running, noQueue, nil} {
		clk.SetTime(clk.Now().Add(time.Minute))
		if k.ServedFor(ctx, js) || looks != 1 {
			t.Fatalf("a JobSet Kueue cannot hold made the hub look again (looks %d)", looks)
		}
	}
	if !k.ServedFor(ctx, queued) || looks != 2 {
		t.Fatalf("a suspended queue-named JobSet after Kueue was installed: served %v, looks %d; want true, 2", k.Served(), looks)
	}
	if !k.ServedFor(ctx, queued) || looks != 2 {
		t.Fatalf("once served, asking again must not look (looks %d)", looks)
	}

	// Kueue removed: the periodic look notices; a "no" is then looked at
	// again at most once per kueueRecheckAfter.
	installed = false
	k.look(ctx)
	if k.ServedFor(ctx, queued) || looks != 3 {
		t.Fatalf("right after a look: served %v, looks %d", k.Served(), looks)
	}
	clk.SetTime(clk.Now().Add(kueueRecheckAfter))
	k.ServedFor(ctx, queued)
	if looks != 4 {
		t.Fatalf("a stale no was not looked at again: looks %d", looks)
	}

	// An apiserver that cannot answer keeps the last answer.
	installed, lookErr = true, errors.New("apiserver down")
	clk.SetTime(clk.Now().Add(kueueRecheckAfter))
	if k.ServedFor(ctx, queued) {
		t.Fatal("a failed look changed the answer")
	}
}
