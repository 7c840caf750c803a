// Package relay_test shows kubectl fleet logs and exec on real apiservers:
// a hub (envtest, aggregation layer on) serving the relay API, and a member
// (kwok, whose fake kubelet serves logs and exec) whose agent holds the
// relay connection. The hub is given no credentials for the member.
package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/fleetctl"
	hubrelay "github.com/jobset-fleet/jobset-fleet/hub/relay"
	"github.com/jobset-fleet/jobset-fleet/membership"
	spokerelay "github.com/jobset-fleet/jobset-fleet/spoke/relay"
)

const (
	cluster = "m1"
	ns      = "team"
)

// kwokConfig makes kwok's fake kubelet serve every Pod's logs from a file
// and run exec commands on the host.
func kwokConfig(t *testing.T, logFile string) string {
	cfg := fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: all
spec:
  selector: {}
  logs:
  - containers: []
    logsFile: %s
    follow: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: all
spec:
  selector: {}
  execs:
  - containers: []
    local:
      workDir: /tmp
`, logFile)
	path := filepath.Join(t.TempDir(), "kwok.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLogsAndExecThroughTheHub(t *testing.T) {
	ctx := t.Context()
	logFile := filepath.Join(t.TempDir(), "container.log")
	writeLog := func(lines ...string) {
		f, err := os.OpenFile(logFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), l)
		}
		_ = f.Close()
	}
	writeLog("fleet-line-1", "fleet-line-2")

	hub := testenv.Start(t, "hub", testenv.WithAggregation())
	member := testenv.StartKwok(t, "relay-member", testenv.KwokOptions{ExtraArgs: []string{
		// The project's stages: a Pod annotated hold=true keeps running.
		"--config=" + filepath.Join(testenv.RepoRoot(), "e2e", "kwok", "stages.yaml"),
		"--config=" + kwokConfig(t, logFile),
	}})
	if _, err := envtest.InstallCRDs(member.Config, envtest.CRDInstallOptions{Paths: testenv.CRDPaths()}); err != nil {
		t.Fatal(err)
	}

	// The hub's relay server, from the hub's config alone.
	port := freePort(t)
	certDir, err := hub.ServeAPIService(ctx, fleet.RelayGroup, fleet.RelayVersion, port)
	if err != nil {
		t.Fatal(err)
	}
	// As in a cluster, the hub starts before its certificate is written
	// (cmd/internal/webhookcerts writes it once the hub runs): the relay
	// waits for it rather than failing the hub.
	relayCertDir := t.TempDir()
	hubMgr := hub.NewManager(t, cache.Options{})
	if err := hubrelay.Setup(hubMgr, hubrelay.Options{BindAddress: fmt.Sprintf("127.0.0.1:%d", port), CertDir: relayCertDir}); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(t, hubMgr)
	time.Sleep(2 * time.Second)
	for _, f := range []string{"tls.key", "tls.crt"} {
		data, err := os.ReadFile(filepath.Join(certDir, f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(relayCertDir, f), data, 0o600))
	}

	// What join and the hub would have made: the member namespace, the
	// agent's ServiceAccount and Role there, a placed JobSet and its
	// dispatch.
	js, dispatch := placeJobSet(t, hub)
	agentHub := agentHubConfig(t, hub)

	// The member: the copy, its Pods, a Pod of no fleet copy, and the
	// agent's relay with the agent's credentials for both sides.
	copyPods(t, member, dispatch)
	agentMgr, err := ctrl.NewManager(member.Config, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := spokerelay.Setup(agentMgr, spokerelay.Options{ClusterName: cluster, HubConfig: agentHub, RetryInterval: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(t, agentMgr)

	kubectlFleet := func(args ...string) (stdout, stderr string, code int) {
		var out, errOut bytes.Buffer
		code = fleetctl.Main(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
			append([]string{"--kubeconfig", hub.KubeconfigPath, "-n", ns}, args...))
		return out.String(), errOut.String(), code
	}

	t.Run("logs of every Pod, prefixed", func(t *testing.T) {
		testenv.Eventually(t, time.Minute, "kubectl fleet logs trainer", func() error {
			out, errOut, code := kubectlFleet("logs", "trainer")
			want := []string{"[trainer-workers-0-0/main] fleet-line-1", "[trainer-workers-0-0/main] fleet-line-2", "[trainer-workers-1-0/main] fleet-line-1"}
			for _, w := range want {
				if !strings.Contains(out, w) {
					return fmt.Errorf("exit %d, want %q in:\n%s%s", code, w, out, errOut)
				}
			}
			return nil
		})
	})

	t.Run("selection and tail", func(t *testing.T) {
		out, errOut, code := kubectlFleet("logs", "trainer", "--replicated-job", "workers", "--job-index", "1", "--tail", "1")
		if code != 0 || out != "[trainer-workers-1-0/main] fleet-line-2\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("follow streams new lines", func(t *testing.T) {
		var out, errOut syncBuffer
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cmd := fleetctl.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		cmd.SetArgs([]string{"--kubeconfig", hub.KubeconfigPath, "-n", ns, "logs", "trainer", "--job-index", "0", "-f"})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(fctx) }()
		testenv.Eventually(t, 30*time.Second, "the existing lines", func() error { return contains(&out, "fleet-line-2") })
		writeLog("fleet-line-3-followed")
		testenv.Eventually(t, 30*time.Second, "the new line", func() error { return contains(&out, "[trainer-workers-0-0/main] fleet-line-3-followed") })
		cancel()
		if err := <-done; err != nil && fctx.Err() == nil {
			t.Errorf("logs -f: %v", err)
		}
	})

	t.Run("exec runs echo and is recorded on the hub JobSet", func(t *testing.T) {
		out, errOut, code := kubectlFleet("exec", "trainer", "--job-index", "1", "--", "echo", "hello-from-the-hub")
		if code != 0 || out != "hello-from-the-hub\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		testenv.Eventually(t, 30*time.Second, "an Exec event on the hub JobSet", func() error {
			var events eventsv1.EventList
			if err := hub.Client.List(ctx, &events); err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.Regarding.UID == js.UID && e.Reason == "Exec" && strings.Contains(e.Note, "echo hello-from-the-hub") &&
					strings.Contains(e.Note, "trainer-workers-1-0") && strings.Contains(e.Note, cluster) {
					return nil
				}
			}
			return fmt.Errorf("none among %d events", len(events.Items))
		})
	})

	t.Run("a user without the verb is refused", func(t *testing.T) {
		for _, args := range [][]string{{"logs", "trainer"}, {"exec", "trainer", "--", "echo", "x"}} {
			out, errOut, code := kubectlFleet(append([]string{"--as", "bob"}, args...)...)
			// logs shows the Status as kubectl does ("Error from server
			// (Forbidden)"); exec, as kubectl exec, the failed upgrade with
			// the same message.
			if code == 0 || !strings.Contains(strings.ToLower(errOut), "forbidden") || !strings.Contains(errOut, `User "bob"`) || !strings.Contains(errOut, `"jobsets/`+args[0][:3]) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want Forbidden for bob on jobsets/%s", args, code, out, errOut, args[0])
			}
		}
		// Granted get on jobsets/log, bob reads the logs, and still may not exec.
		grant(t, hub, "bob", rbacv1.PolicyRule{APIGroups: []string{fleet.RelayGroup}, Resources: []string{"jobsets/log"}, Verbs: []string{"get"}})
		testenv.Eventually(t, 30*time.Second, "bob's logs", func() error {
			out, errOut, _ := kubectlFleet("--as", "bob", "logs", "trainer", "--job-index", "0", "--tail", "1")
			if out != "[trainer-workers-0-0/main] fleet-line-3-followed\n" {
				return fmt.Errorf("stdout %q, stderr %q", out, errOut)
			}
			return nil
		})
		if _, errOut, code := kubectlFleet("--as", "bob", "exec", "trainer", "--", "echo", "x"); code == 0 || !strings.Contains(errOut, "is forbidden") {
			t.Errorf("bob's exec: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("the agent refuses Pods of no fleet copy", func(t *testing.T) {
		for _, args := range [][]string{{"logs", "trainer", "--pod", "stranger"}, {"exec", "trainer", "--pod", "stranger", "--", "echo", "x"}} {
			out, errOut, code := kubectlFleet(args...)
			if code == 0 || !strings.Contains(errOut, "not found") || !strings.Contains(errOut, "none of JobSet team/trainer") || out != "" {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want NotFound", args, code, out, errOut)
			}
		}
	})

	t.Run("the hub holds no credentials for the member", func(t *testing.T) {
		var secrets corev1.SecretList
		if err := hub.Client.List(ctx, &secrets); err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets.Items {
			for k, v := range s.Data {
				if bytes.Contains(v, []byte(member.Config.Host)) || len(member.Config.CertData) > 0 && bytes.Contains(v, member.Config.CertData) {
					t.Errorf("hub Secret %s/%s key %s holds the member's address or token", s.Namespace, s.Name, k)
				}
			}
		}
	})
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// placeJobSet makes on the hub what the dispatcher would have: the JobSet
// placed on the member at epoch 1, and its dispatch.
func placeJobSet(t *testing.T, hub *testenv.Cluster) (*jobset.JobSet, *fleet.JobSetDispatch) {
	ctx := t.Context()
	for _, n := range []string{ns, fleet.MemberNamespace(cluster)} {
		must(t, hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}))
	}
	js := workload(ns, "trainer").ManagedBy(fleet.ManagedByFleet).Obj()
	must(t, hub.Client.Create(ctx, js))
	js.Status.Fleet = &jobset.FleetStatus{Cluster: cluster, Epoch: 1}
	must(t, hub.Client.Status().Update(ctx, js))
	d := &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace(cluster), Name: ns + "-trainer", Labels: map[string]string{fleet.OriginUIDLabel: string(js.UID)}},
		Spec: fleet.JobSetDispatchSpec{Origin: fleet.Origin{Namespace: ns, Name: "trainer", UID: js.UID}, Epoch: 1,
			JobSet: fleet.JobSetTemplate{Spec: workload(ns, "trainer").Obj().Spec}},
	}
	must(t, hub.Client.Create(ctx, d))
	return js, d
}

func workload(ns, name string) *jstesting.JobSetWrapper {
	return jstesting.MakeJobSet(ns, name).ReplicatedJob(
		jstesting.MakeReplicatedJob("workers").Replicas(2).RestartPolicy(corev1.RestartPolicyNever).Container("main", "busybox").Obj())
}

// agentHubConfig is the agent's hub identity as join makes it: the
// ServiceAccount of its member namespace with membership.AgentRules.
func agentHubConfig(t *testing.T, hub *testenv.Cluster) *rest.Config {
	ctx := t.Context()
	memberNS := fleet.MemberNamespace(cluster)
	must(t, hub.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentServiceAccount}}))
	must(t, hub.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentRole}, Rules: membership.AgentRules()}))
	must(t, hub.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: membership.AgentRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: memberNS, Name: membership.AgentServiceAccount}},
	}))
	cs, err := kubernetes.NewForConfig(hub.Config)
	must(t, err)
	tok, err := cs.CoreV1().ServiceAccounts(memberNS).CreateToken(ctx, membership.AgentServiceAccount, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	must(t, err)
	return &rest.Config{Host: hub.Config.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: hub.Config.CAData}}
}

// copyPods makes on the member what the agent and the JobSet controller
// would have: the copy for the dispatch, a Job per replica and a Pod per
// Job, on a fake node; and a Pod labelled for the copy that no Job of it
// made ("stranger").
func copyPods(t *testing.T, member *testenv.KwokCluster, d *fleet.JobSetDispatch) {
	ctx := t.Context()
	c := member.Client
	must(t, testenv.AddNode(ctx, c, "node-1", testenv.NodeSpec{}))
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	memberCopy := workload(ns, "trainer").Label(fleet.EpochLabel, "1").Annotation(fleet.DispatchAnnotation, fleet.DispatchKey(d)).Obj()
	must(t, c.Create(ctx, memberCopy))
	pod := func(name string, labels, annotations map[string]string, owner *metav1.OwnerReference) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
		}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		must(t, c.Create(ctx, p))
	}
	for i := range 2 {
		// A Job that the Job controller leaves alone (managedBy another
		// controller): it exists, so the garbage collector keeps its Pod,
		// and nothing adopts, releases or replaces the Pod made here.
		podName := fmt.Sprintf("trainer-workers-%d-0", i)
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("trainer-workers-%d", i)},
			Spec: batchv1.JobSpec{Suspend: ptr.To(true), ManagedBy: ptr.To("e2e.jobset-fleet.io/nobody"), Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}},
		}
		must(t, c.Create(ctx, job))
		pod(podName, map[string]string{
			jobset.JobSetNameKey: "trainer", jobset.ReplicatedJobNameKey: "workers", jobset.JobIndexKey: fmt.Sprint(i),
			batchv1.JobCompletionIndexAnnotation: "0",
		}, map[string]string{fleet.PodEpochAnnotation: "1", "e2e.jobset-fleet.io/hold": "true"},
			&metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)})
	}
	pod("stranger", map[string]string{jobset.JobSetNameKey: "trainer", jobset.ReplicatedJobNameKey: "workers", jobset.JobIndexKey: "0"}, map[string]string{"e2e.jobset-fleet.io/hold": "true"}, nil)
	testenv.Eventually(t, time.Minute, "the Pods run", func() error {
		var pods corev1.PodList
		if err := c.List(ctx, &pods); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
			}
		}
		return nil
	})
}

// grant binds user to a Role in ns with rule.
func grant(t *testing.T, hub *testenv.Cluster, user string, rule rbacv1.PolicyRule) {
	ctx := t.Context()
	name := "relay-" + user
	must(t, hub.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: []rbacv1.PolicyRule{rule}}))
	must(t, hub.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}))
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func contains(b *syncBuffer, s string) error {
	if out := b.String(); !strings.Contains(out, s) {
		return fmt.Errorf("want %q in:\n%s", s, out)
	}
	return nil
}
