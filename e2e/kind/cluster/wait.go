package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// waitReady waits until want nodes are Ready, CoreDNS is available and the
// default ServiceAccount exists (kind itself only waits for nodes, and not at
// all without a default CNI).
func waitReady(ctx context.Context, client kubernetes.Interface, want int, logw io.Writer) error {
	start := time.Now()
	steps := []struct {
		what  string
		ready func() (bool, string, error)
	}{
		{"nodes Ready", func() (bool, string, error) {
			list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			var notReady []string
			for _, n := range list.Items {
				if !nodeReady(&n) {
					notReady = append(notReady, n.Name)
				}
			}
			if len(list.Items) < want {
				return false, fmt.Sprintf("%d of %d nodes registered", len(list.Items), want), nil
			}
			return len(notReady) == 0, "not ready: " + strings.Join(notReady, ", "), nil
		}},
		{"CoreDNS available", func() (bool, string, error) {
			d, err := client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, "coredns", metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			return d.Status.AvailableReplicas >= want, fmt.Sprintf("%d/%d available", d.Status.AvailableReplicas, want), nil
		}},
		{"default ServiceAccount", func() (bool, string, error) {
			_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			return true, "", nil
		}},
	}
	for _, s := range steps {
		var last string
		for {
			ok, detail, err := s.ready()
			if ok {
				fmt.Fprintf(logw, "kind: %s after %s\n", s.what, time.Since(start).Round(100*time.Millisecond))
				break
			}
			if err != nil {
				detail = err.Error()
			}
			last = detail
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w (%s)", s.what, ctx.Err(), last)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
