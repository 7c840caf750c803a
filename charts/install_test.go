package charts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// startEmptyAPIServer starts a real kube-apiserver without any CRDs (unlike
// testenv.Start), so that the CRDs a chart installs are the chart's, and
// returns an admin kubeconfig file for helm and kubectl.
func startEmptyAPIServer(t *testing.T) (*rest.Config, string) {
	t.Helper()
	env := &envtest.Environment{
		BinaryAssetsDirectory:    testenv.BinDir(),
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
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
	return cfg, kubeconfig
}

func helmInstall(t *testing.T, kubeconfig, chart string) {
	t.Helper()
	if _, err := run(t, tool(t, "helm"), "install", chart, chart, "--kubeconfig", kubeconfig,
		"--namespace", namespace, "--create-namespace"); err != nil {
		t.Fatal(err)
	}
}

func mustExist(t *testing.T, kubeconfig string, objs ...string) {
	t.Helper()
	for _, obj := range objs {
		if _, err := run(t, tool(t, "kubectl"), "--kubeconfig", kubeconfig, "--namespace", namespace, "get", obj); err != nil {
			t.Errorf("after helm install: %v", err)
		}
	}
}

func waitEstablished(t *testing.T, kubeconfig string, crds ...string) {
	t.Helper()
	args := append([]string{"--kubeconfig", kubeconfig, "wait", "--for=condition=Established", "--timeout=60s"}, crds...)
	if _, err := run(t, tool(t, "kubectl"), args...); err != nil {
		t.Fatal(err)
	}
}

// TestChartsInstallOnAPIServer: `helm install` of both charts on a real
// kube-apiserver (no CRDs beforehand): Helm creates the CRDs of crds/ (the
// JobSet CRD is ~860 KB), they become Established, the release (chart and
// manifest, stored in a Secret) fits, and the apiserver accepts every object
// (webhook configurations, the admission policy, RBAC). The hub and the
// agent share the cluster here, as they would on a hub that is also a member.
func TestChartsInstallOnAPIServer(t *testing.T) {
	_, kubeconfig := startEmptyAPIServer(t)
	helmInstall(t, kubeconfig, "jobset-fleet-hub")
	helmInstall(t, kubeconfig, "jobset-fleet-agent")
	waitEstablished(t, kubeconfig, "crd/jobsets.jobset.x-k8s.io", "crd/jobsetdispatches.fleet.jobset.x-k8s.io",
		"crd/clusterprofiles.multicluster.x-k8s.io", "crd/placementdecisions.multicluster.x-k8s.io")
	mustExist(t, kubeconfig,
		"deployment/jobset-fleet-hub", "deployment/jobset-fleet-agent", "poddisruptionbudget/jobset-fleet-agent",
		"service/jobset-fleet-hub-webhook-service", "service/jobset-fleet-webhook-service",
		"role/jobset-fleet-hub", "role/jobset-fleet-agent",
		"clusterrole/jobset-fleet-hub", "clusterrole/jobset-fleet-agent-metrics-reader",
		"validatingadmissionpolicy/jobset-fleet-agent-access-providers",
		"validatingadmissionpolicybinding/jobset-fleet-agent-access-providers",
		"mutatingwebhookconfiguration/jobset-fleet-hub-mutating-webhook-configuration",
		"validatingwebhookconfiguration/jobset-fleet-validating-webhook-configuration")
	out, err := run(t, tool(t, "helm"), "list", "--kubeconfig", kubeconfig, "--namespace", namespace, "--short")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 {
		t.Errorf("helm list: %q, want the two releases", got)
	}
}

// TestChartsAgentAfterJoin: the README's order on a member, join and then
// the agent chart: Helm installs into the namespace join created (and
// labelled), and the agent's flags name the Secret join wrote.
func TestChartsAgentAfterJoin(t *testing.T) {
	hub := testenv.Start(t, "charts-hub")
	memberCfg, kubeconfig := startEmptyAPIServer(t)
	member, err := client.New(memberCfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := membership.Join(ctx, hub.Client, member, membership.Options{
		ClusterName: "member-1", HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true,
	}); err != nil {
		t.Fatalf("join: %v", err)
	}
	helmInstall(t, kubeconfig, "jobset-fleet-agent")
	waitEstablished(t, kubeconfig, "crd/jobsets.jobset.x-k8s.io", "crd/jobsetdispatches.fleet.jobset.x-k8s.io")
	mustExist(t, kubeconfig, "deployment/jobset-fleet-agent", "secret/"+fleet.HubKubeconfigSecret)
	out, err := run(t, tool(t, "kubectl"), "--kubeconfig", kubeconfig, "--namespace", namespace,
		"get", "deployment/jobset-fleet-agent", "-o", "jsonpath={.spec.template.spec.containers[0].args}")
	if err != nil {
		t.Fatal(err)
	}
	if want := "--hub-kubeconfig-secret=" + namespace + "/" + fleet.HubKubeconfigSecret; !strings.Contains(string(out), want) {
		t.Errorf("agent args %s lack %s", out, want)
	}
}
