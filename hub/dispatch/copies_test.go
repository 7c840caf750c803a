package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clientauthenticationv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/fence/fencetest"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// withAccess gives the hub its own access to members
// (--clusterprofile-provider-file).
func withAccess(providerFile string) func(*hubcomponent.Options) {
	return func(o *hubcomponent.Options) { o.ClusterProfileProviderFile = providerFile }
}

// stallingListener accepts connections and never answers, as a member
// whose network or apiserver hangs. It counts connections open at once.
type stallingListener struct {
	net.Listener
	mu              sync.Mutex
	open, most, all int
}

func stall(t *testing.T) *stallingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stallingListener{Listener: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open++
			s.all++
			s.most = max(s.most, s.open)
			s.mu.Unlock()
			go func() {
				_, _ = io.Copy(io.Discard, conn) // until the hub gives up
				_ = conn.Close()
				s.mu.Lock()
				s.open--
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return s
}

func (s *stallingListener) counts() (all, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all, s.most
}

func setAccessProviders(t *testing.T, member string, providers []clusterinventory.AccessProvider) {
	t.Helper()
	testenv.Eventually(t, timeout, "setting the access providers of "+member, func() error {
		p := &clusterinventory.ClusterProfile{}
		if err := hub.Client.Get(context.Background(), types.NamespacedName{Namespace: inventoryNS, Name: member}, p); err != nil {
			return err
		}
		p.Status.AccessProviders = providers
		return hub.Client.Status().Update(context.Background(), p)
	})
}

// TestSilentMemberDoesNotHoldTheHub: a lost member whose access endpoint
// never answers holds none of the dispatcher's workers. The hub probes it
// one probe at a time, says on its JobSets that it does not answer, and
// meanwhile places other JobSets at once.
func TestSilentMemberDoesNotHoldTheHub(t *testing.T) {
	const onStalled = 24 // more than the hub's workers (16 by default)
	listener := stall(t)
	startHub(t, placement.Spread, withAccess(fencetest.ProviderFile(t, clientauthenticationv1.ExecCredentialStatus{Token: "hub-token"})))
	stalled := join(t, "stalled", "100", map[string]string{"test": "stall"})
	setAccessProviders(t, "stalled", fencetest.AccessTo("http://"+listener.Addr().String(), nil))
	join(t, "answers", "100", map[string]string{"test": "stall"})
	ns := namespace(t, "team-stall")

	var waiting []*jobset.JobSet
	for i := range onStalled {
		js := fleetJobSet(ns, fmt.Sprintf("on-stalled-%02d", i), 1, "1").Annotation(fleet.PinnedClusterAnnotation, "stalled").Obj()
		create(t, js)
		waiting = append(waiting, js)
	}
	for _, js := range waiting {
		accept(t, waitDispatched(t, js, "stalled"))
	}

	stalled.stop()
	testenv.Eventually(t, timeout, "the hub looking at the lost member itself", func() error {
		if all, _ := listener.counts(); all == 0 {
			return errors.New("no connection to the member's access endpoint yet")
		}
		return nil
	})

	start := time.Now()
	elsewhere := fleetJobSet(ns, "on-answers", 1, "1").Annotation(fleet.PinnedClusterAnnotation, "answers").Obj()
	create(t, elsewhere)
	if err := testenv.Poll(3*time.Second, func() error {
		if dispatchOf(t, elsewhere, "answers") == nil {
			return errors.New("not dispatched")
		}
		return nil
	}, testenv.Every(50*time.Millisecond)); err != nil {
		t.Errorf("a JobSet on a member that answers was not dispatched within 3s while %d JobSets wait on a member that does not: %v", onStalled, err)
	} else {
		t.Logf("dispatched to the member that answers %v after creation", time.Since(start).Round(time.Millisecond))
	}

	testenv.Eventually(t, 3*fence.ProbeTimeout, "the JobSets on the lost member saying the hub could not reach it", func() error {
		for _, js := range waiting {
			c := condition(get(t, js), fleet.ConditionMemberStatusStale)
			if c == nil || c.Reason != fleet.ReasonAwaitingFence || !strings.Contains(c.Message, "did not answer the hub") {
				return fmt.Errorf("%s: MemberStatusStale = %+v", js.Name, c)
			}
		}
		return nil
	})
	if all, most := listener.counts(); most > 1 {
		t.Errorf("the lost member was probed %d times at once (%d connections in all), want one probe at a time", most, all)
	} else {
		t.Logf("%d connections to the lost member, at most %d at once", all, most)
	}
}
