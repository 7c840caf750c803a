package devfleet

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// The relay (kubectl fleet logs, hub/relay) in the local fleet of kwok
// clusters: the hub's kube-apiserver gets the request-header flags of an
// aggregation layer (kwokctl already gives it a front-proxy client
// certificate, its admin's, CN kwok-admin, signed by its CA); the relay's
// APIService
// reaches the local hub process through an ExternalName Service for
// localhost named as the hub's webhook Service, whose name the hub's
// certificate carries; and the members' kwok serve every Pod's log from
// one file, since kwok runs no containers.

// relayWebhookService is config/hub's webhook Service, which the relay's
// APIService names (config/hub/relay.yaml).
const relayWebhookService = "jobset-fleet-hub-webhook-service"

// kwokConfig is the extra kwokctl configuration of cluster name: the
// hub's aggregation layer, the members' Pod logs. It goes with
// --config at creation (a kept cluster keeps the one it was made with).
func (f *Fleet) kwokConfig(name string) (string, error) {
	var cfg string
	if name == f.Layout.Hub {
		cfg = fmt.Sprintf(`apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: requestheader-client-ca-file
    value: %s
  - key: requestheader-allowed-names
    value: kwok-admin
  - key: requestheader-username-headers
    value: X-Remote-User
  - key: requestheader-uid-headers
    value: X-Remote-Uid
  - key: requestheader-group-headers
    value: X-Remote-Group
  - key: requestheader-extra-headers-prefix
    value: X-Remote-Extra-
`, f.o.path("kwok", "clusters", name, "pki", "ca.crt"))
	} else {
		if err := f.writePodLog(); err != nil {
			return "", err
		}
		cfg = fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: dev-fleet
spec:
  selector: {}
  logs:
  - containers: []
    logsFile: %s
    follow: true
`, f.o.path("pod.log"))
	}
	path := f.o.path("kwok-" + name + ".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// writePodLog writes the lines every Pod of the members logs, in the
// container runtime's log format.
func (f *Fleet) writePodLog() error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var b strings.Builder
	for _, line := range []string{
		"kwok runs no containers: every Pod of the local fleet logs these lines,",
		"served by its member's agent through the hub (kubectl fleet logs).",
		"Lines appended to " + f.o.path("pod.log") + " show up with kubectl fleet logs -f.",
	} {
		fmt.Fprintf(&b, "%s stdout F %s\n", now, line)
	}
	return os.WriteFile(f.o.path("pod.log"), []byte(b.String()), 0o644)
}

// installRelay registers the relay's APIService on the hub, served by the
// local hub process on port. The hub injects its CA into it.
func installRelay(ctx context.Context, c client.Client, port int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: HubNamespace, Name: relayWebhookService},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "relay", Port: int32(port), TargetPort: intstr.FromInt(port)}}},
	}
	if err := c.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("relay Service: %w", err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": fleet.RelayVersion + "." + fleet.RelayGroup},
		"spec": map[string]any{
			"group": fleet.RelayGroup, "version": fleet.RelayVersion,
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			"service": map[string]any{"namespace": HubNamespace, "name": relayWebhookService, "port": int64(port)},
		},
	}}
	if err := c.Create(ctx, apiService); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("relay APIService: %w", err)
	}
	return nil
}
