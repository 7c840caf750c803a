package cluster_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/jobset-fleet/jobset-fleet/e2e/kind/cluster"
)

const rackLabel = "topology.kubernetes.io/rack"

// TestKindCluster proves a 1 control plane + 2 worker cluster works end to
// end: two pods on different workers behind a headless Service resolve each
// other as <hostname>.<subdomain>, talk HTTP to each other, CoreDNS answers
// for cluster names and for the kind node containers (Docker DNS), and pods
// reach the apiserver at <cluster>-control-plane:6443 (as pods of another
// kind cluster would, with InternalKubeconfig).
//
// It needs Docker and runs only with E2E_KIND=1:
//
//	E2E_KIND=1 go test -v -timeout 30m ./e2e/kind/cluster
//
// It runs hack/kind/node-image.sh first (seconds when the images are built).
func TestKindCluster(t *testing.T) {
	if os.Getenv("E2E_KIND") != "1" {
		t.Skip("set E2E_KIND=1 to create real kind clusters (needs Docker)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	log := testWriter{t}

	start := time.Now()
	imgs, err := cluster.EnsureImages(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("images ready in %s: %+v", time.Since(start).Round(time.Second), imgs)

	name := "jf-kind-smoke"
	_ = cluster.Delete(name) // a leftover of an interrupted run
	start = time.Now()
	c, err := cluster.Create(ctx, cluster.Options{
		Name:    name,
		Workers: 2,
		WorkerLabels: []map[string]string{
			{rackLabel: "rack-a"},
			{rackLabel: "rack-b"},
		},
		NodeImage: imgs.Node,
		Log:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNodes(t, c.Nodes)
		}
		if err := c.Delete(); err != nil {
			t.Errorf("delete cluster: %v", err)
		}
	})
	t.Logf("cluster %s (1+2 nodes) ready in %s; nodes %v", name, time.Since(start).Round(100*time.Millisecond), c.Nodes)

	for i, rack := range []string{"rack-a", "rack-b"} {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, cluster.WorkerNodeName(name, i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Labels[rackLabel] != rack {
			t.Fatalf("node %s: %s=%q, want %q", n.Name, rackLabel, n.Labels[rackLabel], rack)
		}
	}
	if !strings.Contains(string(c.InternalKubeconfig), "https://"+cluster.ControlPlaneNodeName(name)+":6443") {
		t.Errorf("internal kubeconfig does not point at the control-plane container:\n%s", c.InternalKubeconfig)
	}

	start = time.Now()
	if err := c.LoadImages(imgs.TestServer); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %s in %s", imgs.TestServer, time.Since(start).Round(100*time.Millisecond))

	ns := "default"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "peers"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "peers"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 8080}},
		},
	}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := map[string]string{"alpha": "rack-a", "beta": "rack-b"}
	peerOf := map[string]string{"alpha": "beta", "beta": "alpha"}
	for host, rack := range pods {
		peer := peerOf[host]
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: host, Labels: map[string]string{"app": "peers"}},
			Spec: corev1.PodSpec{
				Hostname:     host,
				Subdomain:    "peers",
				NodeSelector: map[string]string{rackLabel: rack},
				Containers: []corev1.Container{{
					Name:            "server",
					Image:           imgs.TestServer,
					ImagePullPolicy: corev1.PullNever,
					Args: []string{
						"-peer=" + peer + ".peers:8080",
						"-resolve=" + strings.Join([]string{
							peer + ".peers", // headless Service, other node
							peer + ".peers." + ns + ".svc.cluster.local", // the same, fully qualified
							"kubernetes.default.svc.cluster.local",       // a ClusterIP Service
							cluster.ControlPlaneNodeName(name),           // a kind node (Docker's DNS)
						}, ","),
						// The apiserver by its container name: the way pods of
						// one kind cluster reach another cluster's apiserver.
						"-tcp=" + cluster.ControlPlaneNodeName(name) + ":6443",
					},
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}},
			},
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	start = time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for host := range pods {
		for {
			logs, _ := podLogs(ctx, c.Client, ns, host)
			if strings.Contains(logs, "CHECKS PASSED") {
				t.Logf("%s:\n%s", host, logs)
				break
			}
			if time.Now().After(deadline) {
				p, _ := c.Client.CoreV1().Pods(ns).Get(ctx, host, metav1.GetOptions{})
				t.Fatalf("pod %s did not pass its checks in 3m; phase %v, node %v; logs:\n%s", host, p.Status.Phase, p.Spec.NodeName, logs)
			}
			time.Sleep(time.Second)
		}
	}
	a, err := c.Client.CoreV1().Pods(ns).Get(ctx, "alpha", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Client.CoreV1().Pods(ns).Get(ctx, "beta", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Spec.NodeName == b.Spec.NodeName {
		t.Fatalf("both pods ran on %s", a.Spec.NodeName)
	}
	t.Logf("pods on %s and %s talked in %s", a.Spec.NodeName, b.Spec.NodeName, time.Since(start).Round(100*time.Millisecond))
}

func podLogs(ctx context.Context, client kubernetes.Interface, ns, name string) (string, error) {
	raw, err := client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	return string(raw), err
}

// dumpNodes logs what helps most when a node misbehaves.
func dumpNodes(t *testing.T, nodes []string) {
	for _, n := range nodes {
		out, _ := runQuiet("docker", "exec", n, "sh", "-c",
			"systemctl --no-pager --failed; journalctl --no-pager -u kubelet | tail -30; crictl ps -a; ls /etc/cni/net.d; ip route")
		t.Logf("--- node %s ---\n%s", n, out)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func runQuiet(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
