package cachesync_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/spoke/cachesync"
)

// lagging is a cache that shows the write only after a few reads.
type lagging struct {
	client.Reader
	reads, lag int
	before     string // "" : the object does not exist before the write
}

func (l *lagging) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	l.reads++
	switch {
	case l.reads <= l.lag && l.before == "":
		return apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, key.Name)
	case l.reads <= l.lag:
		obj.SetResourceVersion(l.before)
	default:
		obj.SetResourceVersion("written")
	}
	return nil
}

func TestAwaitWrite(t *testing.T) {
	for _, before := range []string{"", "1"} {
		l := &lagging{lag: 3, before: before}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", ResourceVersion: "written"}}
		cachesync.AwaitWrite(context.Background(), l, cm, before)
		if l.reads != 4 {
			t.Errorf("before %q: returned after %d reads, want 4 (the first that shows the write)", before, l.reads)
		}
	}
}

func TestAwaitWriteStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := &lagging{lag: 1 << 30, before: "1"}
	cachesync.AwaitWrite(ctx, l, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, "1")
	if l.reads > 1 {
		t.Errorf("%d reads after the context ended", l.reads)
	}
}
