package crdwait

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var jobSetKind = schema.GroupVersionKind{Group: "jobset.x-k8s.io", Version: "v1alpha2", Kind: "JobSet"}

// fakeDiscovery serves the JobSet group version once served is set.
type fakeDiscovery struct {
	mu     sync.Mutex
	served bool
}

func (d *fakeDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.served || gv != jobSetKind.GroupVersion().String() {
		return nil, apierrors.NewNotFound(schema.GroupResource{}, gv)
	}
	return &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{
		{Name: "jobsets", Kind: "JobSet"}, {Name: "jobsets/status", Kind: "JobSet"},
	}}, nil
}

// TestWaitReturnsOnceServed: a CRD that becomes served while the component
// waits ends the wait; meanwhile the log says what is missing, once, not
// once per check.
func TestWaitReturnsOnceServed(t *testing.T) {
	d := &fakeDiscovery{}
	var (
		logMu sync.Mutex
		logs  []string
	)
	log := funcr.New(func(_, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		logs = append(logs, args)
	}, funcr.Options{})

	done := make(chan error, 1)
	go func() {
		done <- wait(context.Background(), log, d, []schema.GroupVersionKind{jobSetKind}, Options{Interval: 10 * time.Millisecond})
	}()
	select {
	case err := <-done:
		t.Fatalf("returned before the CRD was served: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	d.mu.Lock()
	d.served = true
	d.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the CRD was served")
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(logs) != 2 || !strings.Contains(logs[0], "JobSet.jobset.x-k8s.io/v1alpha2") || !strings.Contains(logs[1], "CRDs are served") {
		t.Errorf("want one log naming the missing kind, then one saying they are served; got %q", logs)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := wait(ctx, logr.Discard(), &fakeDiscovery{}, []schema.GroupVersionKind{jobSetKind}, Options{Interval: 10 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "JobSet.jobset.x-k8s.io/v1alpha2") {
		t.Fatalf("want an error naming the missing kind, got %v", err)
	}
}

func TestMissing(t *testing.T) {
	other := schema.GroupVersionKind{Group: "fleet.jobset.x-k8s.io", Version: "v1alpha1", Kind: "JobSetDispatch"}
	missing, err := Missing(&fakeDiscovery{served: true}, []schema.GroupVersionKind{jobSetKind, other})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"JobSetDispatch.fleet.jobset.x-k8s.io/v1alpha1"}; strings.Join(missing, ",") != strings.Join(want, ",") {
		t.Errorf("Missing = %q, want %q", missing, want)
	}
}
