package kindfleet_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// TestPane: a user of the hub reads the logs of a fleet JobSet's real
// containers, follows them, and runs a command in one, with kubectl fleet
// against the hub only; the hub kube-apiserver verifies the relay's
// certificate (the CA the hub injected into the APIService), the hub
// forwards over the connection the member's agent opened, and holds no
// credentials for the member. A user without the verbs is refused.
func TestPane(t *testing.T) {
	ns := newNamespace(t, "kf-pane")
	const js = "pane"
	kubectlFleet := buildKubectlFleet(t)
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
spec:
  replicatedJobs:
  - name: workers
    template:
      spec:
        parallelism: 2
        completions: 2
        backoffLimit: 0
        template:
          spec:
            terminationGracePeriodSeconds: 5
            containers:
            - name: main
              image: %[2]s
              args: ["--hold", "--tick=1s", "--timeout=20m"]
`, js, env.images.workload))

	// Placed, and both containers running on the member.
	ctx := context.Background()
	var memberName string
	eventually(t, jobSetTimeout, "both Pods of "+js+" running on their member", func() (bool, string, error) {
		hubJS, err := getHubJobSet(ctx, ns, js)
		if err != nil {
			return false, "", err
		}
		if memberName = placedOn(hubJS); memberName == "" {
			return false, describe(hubJS), nil
		}
		list, err := pods(ctx, member(t, memberName), ns, js)
		if err != nil {
			return false, "", err
		}
		running := 0
		for _, p := range list {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 2, fmt.Sprintf("%d of %d Pods running on %s", running, len(list), memberName), nil
	})

	run := func(ctx context.Context, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(ctx, kubectlFleet, append([]string{"--kubeconfig", env.kubeconfig, "--context", env.hub.context, "-n", ns}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}

	t.Run("logs of every Pod", func(t *testing.T) {
		// The APIService becomes Available once the hub injected its CA,
		// and the agent attaches once it is.
		eventually(t, 3*time.Minute, "kubectl fleet logs "+js, func() (bool, string, error) {
			out, errOut, err := run(ctx, "logs", js)
			if err != nil {
				return false, fmt.Sprintf("%v: %s", err, errOut), nil
			}
			for i := range 2 {
				host := fmt.Sprintf("%s-workers-0-%d", js, i)
				if !regexp.MustCompile(`(?m)^\[` + host + `-[a-z0-9]+/main\] .*Starting on ` + host + `: completion index "` + strconv.Itoa(i) + `"`).MatchString(out) {
					return false, fmt.Sprintf("no start line of %s in:\n%s", host, tail(out, 20)), nil
				}
			}
			if n := strings.Count(out, "/main] ") - strings.Count(out, "\n"); n != 0 {
				return false, "a line without its [pod/container] prefix in:\n" + tail(out, 20), nil
			}
			return true, "", nil
		})
		// Served over TLS the kube-apiserver verified with the CA the hub
		// injected, not by skipping verification.
		out, err := env.kubectlCmd(ctx, env.hub, nil, "get", "apiservice", "v1alpha1."+fleet.RelayGroup,
			"-o", "jsonpath={.spec.insecureSkipTLSVerify}|{.spec.caBundle}")
		if skip, ca, _ := strings.Cut(out, "|"); err != nil || skip == "true" || ca == "" {
			t.Errorf("relay APIService: insecureSkipTLSVerify %q, caBundle %d bytes, err %v; want verification with the hub's CA", skip, len(ca), err)
		}
	})

	t.Run("follow streams new lines", func(t *testing.T) {
		before, errOut, err := run(ctx, "logs", js, "--pod-index", "0")
		if err != nil {
			t.Fatalf("logs: %v: %s", err, errOut)
		}
		last := lastTick(before)
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var out lockedBuffer
		cmd := exec.CommandContext(fctx, kubectlFleet, "--kubeconfig", env.kubeconfig, "--context", env.hub.context, "-n", ns,
			"logs", js, "--pod-index", "0", "-f", "--tail", "1")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Lines the container writes after the command started, as they
		// come: three ticks past the last one logged before.
		eventually(t, time.Minute, "ticks past "+strconv.Itoa(last)+" while following", func() (bool, string, error) {
			select {
			case err := <-done:
				return false, "", fmt.Errorf("logs -f ended: %v:\n%s", err, out.String())
			default:
			}
			return lastTick(out.String()) >= last+3, tail(out.String(), 5), nil
		})
		cancel()
		if err := <-done; err != nil && fctx.Err() == nil {
			t.Errorf("logs -f: %v", err)
		}
	})

	t.Run("exec runs echo", func(t *testing.T) {
		// The image has no shell: the workload binary echoes.
		out, errOut, err := run(ctx, "exec", js, "--pod-index", "1", "--", "/usr/local/bin/jobset-fleet-workload", "echo", "hello-from-the-hub")
		if err != nil || out != "hello-from-the-hub\n" {
			t.Fatalf("exec: %v, stdout %q, stderr %q", err, out, errOut)
		}
	})

	t.Run("a user without the verbs is refused", func(t *testing.T) {
		for _, args := range [][]string{{"logs", js}, {"exec", js, "--", "/usr/local/bin/jobset-fleet-workload", "echo", "x"}} {
			out, errOut, err := run(ctx, append([]string{"--as", "kf-pane-nobody"}, args...)...)
			if err == nil || !strings.Contains(strings.ToLower(errOut), "forbidden") || !strings.Contains(errOut, `"jobsets/`+args[0][:3]) || strings.Contains(out, "x") {
				t.Errorf("%v as kf-pane-nobody: %v, stdout %q, stderr %q; want Forbidden on jobsets/%s", args, err, out, errOut, args[0])
			}
		}
	})

	t.Run("the hub holds no credentials for the member", func(t *testing.T) {
		var secrets corev1.SecretList
		if err := env.hub.c.List(ctx, &secrets); err != nil {
			t.Fatal(err)
		}
		for _, m := range env.memberList() {
			secretsOfMember := map[string][]byte{
				"client certificate": m.cfg.CertData, "client key": m.cfg.KeyData, "CA": m.cfg.CAData,
				"address": []byte(strings.TrimPrefix(m.cfg.Host, "https://")), "node address": []byte(m.name + "-control-plane:6443"),
			}
			for _, s := range secrets.Items {
				for k, v := range s.Data {
					for what, b := range secretsOfMember {
						if len(b) > 0 && bytes.Contains(v, b) {
							t.Errorf("hub Secret %s/%s key %s holds %s's %s", s.Namespace, s.Name, k, m.name, what)
						}
					}
				}
			}
		}
		var profiles clusterinventory.ClusterProfileList
		if err := env.hub.c.List(ctx, &profiles, client.InNamespace(fleet.DefaultInventoryNamespace)); err != nil {
			t.Fatal(err)
		}
		for _, p := range profiles.Items {
			if len(p.Status.AccessProviders) > 0 || len(p.Status.CredentialProviders) > 0 {
				t.Errorf("ClusterProfile %s gives the hub access to its member: %+v %+v", p.Name, p.Status.AccessProviders, p.Status.CredentialProviders)
			}
		}
		out, err := env.kubectlCmd(ctx, env.hub, nil, "-n", systemNamespace, "get", "deployment", hubDeployment, "-o", "jsonpath={.spec.template.spec.containers[0].args}")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "clusterprofile-provider-file") {
			t.Errorf("the hub runs with access providers for members: %s", out)
		}
	})
}

// buildKubectlFleet builds kubectl-fleet of this checkout (bin/ is shared,
// and may hold another build).
func buildKubectlFleet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubectl-fleet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-fleet")
	cmd.Dir = env.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubectl-fleet: %v\n%s", err, out)
	}
	return bin
}

var tickLine = regexp.MustCompile(`Tick (\d+)`)

// lastTick is the highest "Tick <n>" the workload logged in out.
func lastTick(out string) int {
	last := 0
	for _, m := range tickLine.FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.Atoi(m[1]); n > last {
			last = n
		}
	}
	return last
}

// lockedBuffer is a bytes.Buffer a command writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
