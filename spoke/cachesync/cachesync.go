// Package cachesync lets a reconciler read its own writes through its
// informer cache. Right after a write, the write's own watch event can
// start the next reconcile of the same key before the cache holds the
// write; that reconcile then acts on the old object and makes a write that
// can only fail: a create of what exists, a patch whose optimistic lock
// conflicts. Each such failure costs the API server nearly what a real
// write does. Waiting a few milliseconds for the cache avoids it.
package cachesync

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Timeout bounds the wait. Giving up is harmless: the failed write that
// follows is retried, as it would have been without the wait.
const Timeout = 2 * time.Second

// AwaitWrite waits until the cache behind c holds obj at a resourceVersion
// other than before: the version the write was based on, or "" after a
// create. Versions are compared for equality only, as the API requires; a
// version other than before is the write or one after it.
func AwaitWrite(ctx context.Context, c client.Reader, obj client.Object, before string) {
	cached := obj.DeepCopyObject().(client.Object)
	_ = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, Timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cached); err != nil {
			return false, nil
		}
		return cached.GetResourceVersion() != before, nil
	})
}
