package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// run runs the agent's command line in-process and returns what it printed.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := command()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// section is the text of one --help section, up to the next one.
func section(help, title string) string {
	_, rest, ok := strings.Cut(help, "\n"+title+" flags:\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, " flags:\n"); i >= 0 {
		rest = rest[:strings.LastIndex(rest[:i], "\n")]
	}
	return rest
}

// TestHelp: --help lists the agent's own flags apart from the shared ones
// and klog's, each command has its help with examples, and shells get
// completion.
func TestHelp(t *testing.T) {
	help, err := run(t, "--help")
	must(t, err)
	for title, flags := range map[string][]string{
		"Agent":           {"--fence-timeout", "--hub-kubeconfig-secret", "--cluster-name"},
		"Kube client":     {"--kubeconfig", "--context", "--kube-api-qps"},
		"Leader election": {"--leader-elect-lease-duration"},
		"Logging":         {"-v, --v", "--vmodule"},
		"Generic":         {"--version", "-h, --help"},
	} {
		s := section(help, title)
		for _, f := range flags {
			if !strings.Contains(s, f) {
				t.Errorf("--help: section %q lacks %s:\n%s", title, f, s)
			}
		}
	}
	if strings.Contains(section(help, "Agent"), "--vmodule") {
		t.Error("--help: klog's flags are among the agent's own")
	}
	for _, c := range []string{"join ", "token ", "unjoin ", "cordon ", "uncordon ", "drain ", "completion "} {
		if !strings.Contains(help, "\n  "+c) {
			t.Errorf("--help does not list command %q:\n%s", c, help)
		}
	}

	join, err := run(t, "join", "--help")
	must(t, err)
	for _, want := range []string{"Usage:\n  jobset-fleet-agent join [flags]", "Examples:", "--token jft1.", "Hub flags:", "--hub-context", "Member flags:", "--member-context", "--dry-run", "--allow-loopback-hub-server"} {
		if !strings.Contains(join, want) {
			t.Errorf("join --help lacks %q:\n%s", want, join)
		}
	}
	if strings.Contains(join, "--vmodule") || strings.Contains(join, "--fence-timeout") {
		t.Errorf("join --help lists the controller's flags:\n%s", join)
	}
	for _, args := range [][]string{{"token", "create", "--help"}, {"unjoin", "--help"}, {"drain", "--help"}} {
		out, err := run(t, args...)
		must(t, err)
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, "--hub-context") {
			t.Errorf("%v lacks examples or --hub-context:\n%s", args, out)
		}
	}
	out, err := run(t, "completion", "bash")
	must(t, err)
	if !strings.Contains(out, "bash completion") || !strings.Contains(out, "jobset-fleet-agent") {
		t.Errorf("completion bash printed no script:\n%.300s", out)
	}
	if _, err := run(t, "jion"); err == nil || !strings.Contains(err.Error(), `unknown command "jion"`) {
		t.Errorf("a mistyped command: %v", err)
	}
}

// TestFlagForms: the flag forms the manifests, harnesses and tests pass
// still parse, with the meaning they had.
func TestFlagForms(t *testing.T) {
	cmd := controllerCommand()
	must(t, cmd.ParseFlags([]string{
		"--kubeconfig=/k", "--context", "c", "--hub-kubeconfig-secret=jobset-fleet-system/hub-kubeconfig",
		"--cluster-name=m1", "-v=2", "--leader-elect=false", "--create-namespaces=false",
		"--webhook-port", "9443", "--metrics-bind-address=0", "--feature-gates=TLSOptions=true",
	}))
	for name, want := range map[string]string{"kubeconfig": "/k", "context": "c", "cluster-name": "m1", "v": "2", "leader-elect": "false", "webhook-port": "9443"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
	if err := cmd.ParseFlags([]string{"--no-such-flag"}); err == nil {
		t.Error("an unknown flag parsed")
	}
}

// TestTokenJoinCommands runs the two steps of a token join as the two
// admins would, each with its own cluster's kubeconfig file only, and a
// dry run and a refused join that create nothing.
func TestTokenJoinCommands(t *testing.T) {
	hub := testenv.Start(t, "cli-hub", testenv.WithBootstrapTokenAuth())
	member := testenv.Start(t, "cli-member")
	ctx := context.Background()

	// A loopback hub address is refused unless allowed (the test's
	// apiservers are local): nothing is created.
	if _, err := run(t, "token", "create", "--hub-kubeconfig", hub.KubeconfigPath, "--cluster-name", "m1"); err == nil ||
		!strings.Contains(err.Error(), "loopback") {
		t.Errorf("token create with a loopback hub: %v", err)
	}
	if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, &clusterinventory.ClusterProfile{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused token create wrote the ClusterProfile: %v", err)
	}

	token, err := run(t, "token", "create", "--hub-kubeconfig", hub.KubeconfigPath, "--cluster-name", "m1", "--ttl", "10m",
		"--allow-loopback-hub-server", "--labels", "team=b", "-o", "token")
	must(t, err)
	token = strings.TrimSpace(token)
	out, err := run(t, "join", "--token", token, "--member-kubeconfig", member.KubeconfigPath)
	must(t, err)
	if !strings.Contains(out, "Joined m1.") {
		t.Errorf("join --token printed:\n%s", out)
	}
	must(t, member.Client.Get(ctx, client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}, &corev1.Secret{}))
	if _, err := run(t, "join", "--token", token, "--member-kubeconfig", member.KubeconfigPath); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("second join with the token: %v", err)
	}

	// A dry run prints every object and creates none.
	out, err = run(t, "join", "--hub-kubeconfig", hub.KubeconfigPath, "--member-kubeconfig", member.KubeconfigPath,
		"--cluster-name", "m2", "--allow-loopback-hub-server", "--dry-run", "-o", "yaml")
	must(t, err)
	for _, want := range []string{"kind: ClusterProfile", "name: m2", "kind: ServiceAccount", "kind: Role\n", "kind: RoleBinding",
		"kind: CustomResourceDefinition", "name: " + fleet.HubKubeconfigSecret, "# on the member", "namespace: " + fleet.MemberNamespace("m2")} {
		if !strings.Contains(out, want) {
			t.Errorf("join --dry-run -o yaml lacks %q", want)
		}
	}
	if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m2"}, &clusterinventory.ClusterProfile{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run wrote the ClusterProfile: %v", err)
	}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: fleet.MemberNamespace("m2")}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run created the member namespace: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
