package charts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestChartsInstallOnAPIServer: `helm install` of both charts on a real
// kube-apiserver (no CRDs beforehand): Helm creates the CRDs of crds/ (the
// JobSet CRD is ~860 KB), they become Established, the release (chart and
// manifest, stored in a Secret) fits, and the apiserver accepts every object
// (webhook configurations, the admission policy, RBAC). The hub and the
// agent share the cluster here, as they would on a hub that is also a member.
func TestChartsInstallOnAPIServer(t *testing.T) {
	helm, kubectl := tool(t, "helm"), tool(t, "kubectl")
	env := &envtest.Environment{
		BinaryAssetsDirectory:    testenv.BinDir(),
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop kube-apiserver: %v", err)
		}
	})
	admin, err := env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, chart := range []string{"jobset-fleet-hub", "jobset-fleet-agent"} {
		if _, err := run(t, helm, "install", chart, chart, "--kubeconfig", kubeconfig,
			"--namespace", namespace, "--create-namespace"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run(t, kubectl, "--kubeconfig", kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/jobsets.jobset.x-k8s.io", "crd/jobsetdispatches.fleet.jobset.x-k8s.io",
		"crd/clusterprofiles.multicluster.x-k8s.io", "crd/placementdecisions.multicluster.x-k8s.io"); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{
		"deployment/jobset-fleet-hub", "deployment/jobset-fleet-agent", "poddisruptionbudget/jobset-fleet-agent",
		"service/jobset-fleet-hub-webhook-service", "service/jobset-fleet-webhook-service",
		"role/jobset-fleet-hub", "role/jobset-fleet-agent",
		"clusterrole/jobset-fleet-hub", "clusterrole/jobset-fleet-agent-metrics-reader",
		"validatingadmissionpolicy/jobset-fleet-agent-access-providers",
		"validatingadmissionpolicybinding/jobset-fleet-agent-access-providers",
		"mutatingwebhookconfiguration/jobset-fleet-hub-mutating-webhook-configuration",
		"validatingwebhookconfiguration/jobset-fleet-validating-webhook-configuration",
	} {
		if _, err := run(t, kubectl, "--kubeconfig", kubeconfig, "--namespace", namespace, "get", obj); err != nil {
			t.Errorf("after helm install: %v", err)
		}
	}
	out, err := run(t, helm, "list", "--kubeconfig", kubeconfig, "--namespace", namespace, "--short")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 {
		t.Errorf("helm list: %q, want the two releases", got)
	}
}
