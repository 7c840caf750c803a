package fleetctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/fleetctl"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

var hub *testenv.Cluster

// The fleet every test reads: member-1 (healthy, 8 CPUs of which 6 free,
// 2 GPUs), member-2 (healthy, 4 CPUs, 1 free, cordoned), member-3
// (labelled out of service, no heartbeat Lease). Tests that change it
// use their own namespaces and JobSets only.
func TestMain(m *testing.M) {
	c, stop := testenv.StartMain("hub")
	hub = c
	code := 1
	func() {
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintln(os.Stderr, "fleet setup:", r)
			}
		}()
		setUpFleet()
		code = m.Run()
	}()
	stop()
	os.Exit(code)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func setUpFleet() {
	ctx := context.Background()
	must(hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.DefaultInventoryNamespace}}))
	member(ctx, "member-1", true, nil, map[string]string{"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}, map[string]string{"cpu": "6", "memory": "20Gi", "nvidia.com/gpu": "2"})
	member(ctx, "member-2", true, map[string]string{fleet.CordonedLabel: "true"}, map[string]string{"cpu": "4", "memory": "16Gi"}, map[string]string{"cpu": "1", "memory": "8Gi"})
	member(ctx, "member-3", false, map[string]string{fleet.OutOfServiceLabel: "true"}, map[string]string{"cpu": "4"}, map[string]string{"cpu": "4"})
}

// member writes what a member's agent would: its ClusterProfile status
// (healthy, with properties) and, when heartbeat, a Lease renewed now.
func member(ctx context.Context, name string, heartbeat bool, labels, allocatable, free map[string]string) {
	must(hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.MemberNamespace(name)}}))
	if heartbeat {
		must(hub.Client.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace(name), Name: fleet.HeartbeatLeaseName},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](20),
				RenewTime: &metav1.MicroTime{Time: time.Now().Add(-3 * time.Second)}},
		}))
	}
	p := &clusterinventory.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: name, Labels: labels},
		Spec:       clusterinventory.ClusterProfileSpec{ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
	}
	must(hub.Client.Create(ctx, p))
	now := metav1.Now()
	p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionTrue, Reason: "Healthy", LastTransitionTime: now}}
	for r, v := range allocatable {
		p.Status.Properties = append(p.Status.Properties, clusterinventory.Property{Name: fleet.PropertyAllocatablePrefix + r, Value: v, LastObservedTime: now})
	}
	for r, v := range free {
		p.Status.Properties = append(p.Status.Properties, clusterinventory.Property{Name: fleet.PropertyFreePrefix + r, Value: v, LastObservedTime: now})
	}
	must(hub.Client.Status().Update(ctx, p))
}

// run runs `kubectl fleet args...` against the hub as admin.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runAs(t, hub.KubeconfigPath, args...)
}

func runAs(t *testing.T, kubeconfig string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = fleetctl.Main(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, append(args, "--kubeconfig", kubeconfig))
	return out.String(), errOut.String(), code
}

func namespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if err := hub.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func fleetJobSet(ns, name string, pods int32, cpu string) *jobset.JobSet {
	return jstesting.MakeJobSet(ns, name).ManagedBy(fleet.ManagedByFleet).ReplicatedJob(
		jstesting.MakeReplicatedJob("workers").Replicas(1).Parallelism(pods).Completions(pods).
			RestartPolicy(corev1.RestartPolicyNever).Container("train", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}).Obj()).Obj()
}

// createWithStatus creates a hub JobSet and writes the status the hub
// would have written.
func createWithStatus(t *testing.T, js *jobset.JobSet, status jobset.JobSetStatus) *jobset.JobSet {
	t.Helper()
	ctx := context.Background()
	if err := hub.Client.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	js.Status = status
	if err := hub.Client.Status().Update(ctx, js); err != nil {
		t.Fatal(err)
	}
	return js
}

func running(member string, epoch int64) jobset.JobSetStatus {
	return jobset.JobSetStatus{
		Restarts: 2,
		Conditions: []metav1.Condition{{Type: fleet.ConditionDispatched, Status: metav1.ConditionTrue, Reason: fleet.ReasonRedispatched,
			Message: fmt.Sprintf("dispatched to member %s (epoch %d)", member, epoch), LastTransitionTime: metav1.Now()}},
		ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "workers", Ready: 1, Active: 1}},
		Fleet: &jobset.FleetStatus{Cluster: member, Epoch: epoch, RestartsCarried: 1, StartedEpoch: epoch, StartDeadlineSince: ptr.To(metav1.Now()),
			Withdrawals: []jobset.Withdrawal{{Cluster: "member-2", Epoch: epoch - 1, Time: metav1.Now()}}},
	}
}

func waiting() jobset.JobSetStatus {
	return jobset.JobSetStatus{
		Conditions: []metav1.Condition{{Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse, Reason: fleet.ReasonNoFit,
			Message:            "Queued: 2nd; no member cluster fits: member-1: insufficient resources: needs cpu 40, 6 free; member-2: insufficient resources: needs cpu 40, 1 free",
			LastTransitionTime: metav1.Now()}},
		Fleet: &jobset.FleetStatus{},
	}
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(got, want) {
			t.Errorf("%s does not contain %q:\n%s", what, want, got)
		}
	}
}

func TestGetJobSets(t *testing.T) {
	ns := namespace(t)
	createWithStatus(t, fleetJobSet(ns, "trainer", 2, "1"), running("member-1", 3))
	createWithStatus(t, fleetJobSet(ns, "big", 1, "40"), waiting())

	out, errOut, code := run(t, "get", "jobsets", "-n", ns)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two rows, got:\n%s", out)
	}
	for _, col := range []string{"NAME", "CLUSTER", "STATE", "RESTARTS", "QUEUE", "AGE"} {
		mustContain(t, "header", lines[0], col)
	}
	if strings.Contains(lines[0], "EPOCH") {
		t.Errorf("EPOCH is a wide column:\n%s", out)
	}
	mustContain(t, "big's row", lines[1], "big", "<none>", "Pending", "NoFit 2nd")
	mustContain(t, "trainer's row", lines[2], "trainer", "member-1", "Running", " 2 ")

	out, _, _ = run(t, "get", "jobsets", "-n", ns, "-o", "wide")
	mustContain(t, "wide", out, "EPOCH", "MESSAGE", "dispatched to member member-1 (epoch 3)", "Queued: 2nd; no member cluster fits")

	out, _, _ = run(t, "get", "jobsets", "-A")
	mustContain(t, "-A", out, "NAMESPACE", ns+"   ")

	out, _, _ = run(t, "get", "jobsets", "-n", ns, "-o", "json")
	var list jobset.JobSetList
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 2 || list.Kind != "JobSetList" {
		t.Errorf("-o json: want a JobSetList of 2, got %v (%v):\n%s", len(list.Items), err, out)
	}
	out, _, _ = run(t, "get", "jobsets", "trainer", "-n", ns, "-o", "yaml")
	mustContain(t, "-o yaml", out, "kind: JobSet", "cluster: member-1")
}

func TestDescribeJobSet(t *testing.T) {
	ns := namespace(t)
	js := createWithStatus(t, fleetJobSet(ns, "trainer", 2, "1"), running("member-1", 3))
	ctx := context.Background()
	res := placement.Result{Cluster: "member-1", Verdicts: []placement.Verdict{
		{Cluster: "member-1", Fits: true, Reason: "chosen by spread policy; fits; 50% of cpu free after placement (4 of 8)"},
		{Cluster: "member-2", Reason: "insufficient resources: needs cpu 2, 1 free"},
		{Cluster: "member-3", Reason: "unhealthy: marked out of service (label fleet.jobset.x-k8s.io/out-of-service); no heartbeat Lease fleet-member-member-3/agent-heartbeat"},
	}}
	if err := hub.Client.Create(ctx, placement.Decision(js, res, fleet.DefaultInventoryNamespace)); err != nil {
		t.Fatal(err)
	}
	event(t, js, corev1.EventTypeWarning, fleet.ReasonStartTimeout, "no Pod started on member member-2 within 5m0s; withdrawing epoch 2")
	event(t, js, corev1.EventTypeNormal, fleet.ReasonRedispatched, "dispatched to member member-1 (epoch 3)")

	out, errOut, code := run(t, "describe", "jobset", "trainer", "-n", ns)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	mustContain(t, "describe", out,
		"Cluster:", "member-1", "Epoch:", "3", "Restarts:", "2 (carried from earlier placements: 1)",
		"Chosen:", "member-1 (chosen by spread policy",
		"member-2", "insufficient resources: needs cpu 2, 1 free",
		"member-3", "unhealthy: marked out of service (label fleet.jobset.x-k8s.io/out-of-service); no heartbeat Lease",
		"Current:", "epoch 3 on member-1", "(started)",
		"Withdrawn", "EPOCH  MEMBER    WITHDRAWN",
		"StartTimeout", "no Pod started on member member-2",
		"Redispatched",
		"workers", "The hub holds no member credentials",
		"Events:")
}

func event(t *testing.T, js *jobset.JobSet, typ, reason, msg string) {
	t.Helper()
	now := metav1.Now()
	e := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: js.Namespace, GenerateName: js.Name + "."},
		InvolvedObject: corev1.ObjectReference{Kind: "JobSet", APIVersion: jobset.GroupVersion.String(), Namespace: js.Namespace, Name: js.Name, UID: js.UID},
		Type:           typ, Reason: reason, Message: msg, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "jobset-fleet-hub"},
	}
	if err := hub.Client.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func TestMembers(t *testing.T) {
	ns := namespace(t)
	createWithStatus(t, fleetJobSet(ns, "a", 1, "1"), running("member-1", 1))
	createWithStatus(t, fleetJobSet(ns, "b", 1, "1"), running("member-1", 1))
	done := running("member-2", 1)
	done.TerminalState = string(jobset.JobSetCompleted)
	createWithStatus(t, fleetJobSet(ns, "c", 1, "1"), done)

	out, errOut, code := run(t, "members")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and three members:\n%s", out)
	}
	mustContain(t, "header", lines[0], "NAME", "HEALTH", "HEARTBEAT", "SCHEDULING", "CPU", "MEMORY", "GPU", "JOBSETS")
	fields := func(l string) []string { return strings.Fields(l) }
	// At least two, unrelated tests may add more on member-1.
	if f := fields(lines[1]); f[0] != "member-1" || f[1] != "Healthy" || f[3] != "Schedulable" || f[4] != "6/8" || f[5] != "20Gi/32Gi" || f[6] != "2/2" {
		t.Errorf("member-1's row: %q", lines[1])
	}
	if f := fields(lines[1]); !strings.HasSuffix(f[2], "s") {
		t.Errorf("member-1's heartbeat age: %q", lines[1])
	}
	if f := fields(lines[2]); f[0] != "member-2" || f[1] != "Healthy" || f[3] != "Cordoned" || f[4] != "1/4" || f[6] != "-" {
		t.Errorf("member-2's row: %q", lines[2])
	}
	if f := fields(lines[3]); f[0] != "member-3" || f[1] != "Unhealthy" || f[2] != "<none>" || f[3] != "OutOfService" || f[len(f)-1] != "0" {
		t.Errorf("member-3's row: %q", lines[3])
	}

	out, _, _ = run(t, "members", "-o", "wide")
	mustContain(t, "wide", out, "REASON", "marked out of service", "no heartbeat Lease fleet-member-member-3/agent-heartbeat")

	if n, err := strconv.Atoi(fields(lines[1])[7]); err != nil || n < 2 {
		t.Errorf("member-1 runs at least 2 JobSets: %q", lines[1])
	}
	out, _, _ = run(t, "members", "-o", "json")
	var table metav1.Table
	if err := json.Unmarshal([]byte(out), &table); err != nil || len(table.Rows) != 3 || table.Kind != "Table" {
		t.Errorf("-o json: want a Table of 3 members (%v):\n%s", err, out)
	}
}

func TestWhy(t *testing.T) {
	ns := namespace(t)
	js := createWithStatus(t, fleetJobSet(ns, "big", 1, "40"), waiting())
	res, err := placement.Place(placement.Request{JobSet: js})
	if err != nil {
		t.Fatal(err)
	}
	res.Verdicts = []placement.Verdict{
		{Cluster: "member-1", Reason: "insufficient resources: needs cpu 40, 6 free"},
		{Cluster: "member-2", Reason: "insufficient resources: needs cpu 40, 1 free"},
	}
	if err := hub.Client.Create(context.Background(), placement.Decision(js, res, fleet.DefaultInventoryNamespace)); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "why", "big", "-n", ns)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	mustContain(t, "why", out,
		"JobSet "+ns+"/big waits (NoFit", "Queued: 2nd;",
		"The hub's last placement decision:", "Chosen:", "<none>",
		"member-1", "insufficient resources: needs cpu 40, 6 free",
		"If placed now",
		// The hub's placement code over the members as assessed now:
		"member-3", "unhealthy: marked out of service")

	running := createWithStatus(t, fleetJobSet(ns, "small", 1, "1"), running("member-1", 3))
	_ = running
	out, _, _ = run(t, "why", "small", "-n", ns)
	mustContain(t, "why (running)", out, "JobSet "+ns+"/small runs on member-1 (epoch 3)", "Withdrawn from member-2 (epoch 2)")
}

func TestWhatIf(t *testing.T) {
	ns := namespace(t)
	dir := t.TempDir()
	write := func(name string, js *jobset.JobSet) string {
		js.APIVersion, js.Kind = jobset.GroupVersion.String(), "JobSet"
		data, err := json.Marshal(js)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	fits := write("fits.json", fleetJobSet("", "two-cpus", 2, "1"))
	out, errOut, code := run(t, "what-if", "-f", fits, "-n", ns)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	mustContain(t, "what-if", out,
		"JobSet "+ns+"/two-cpus would run on member-1: chosen by spread policy",
		"cpu=2",
		"member-2", "cordoned by an operator",
		"member-3", "unhealthy: marked out of service",
		"Nothing was created.")

	tooBig := write("big.json", fleetJobSet(ns, "huge", 1, "100"))
	out, _, _ = run(t, "what-if", "-f", tooBig)
	mustContain(t, "what-if (no fit)", out, "fits no member now", "needs cpu 100, 6 free")

	list := &jobset.JobSetList{}
	if err := hub.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("what-if created %d JobSets", len(list.Items))
	}
}

// TestForbidden: a user the hub's RBAC does not let read JobSets gets the
// API server's Forbidden message, not a stack or usage.
func TestForbidden(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nobody"}}
	if err := hub.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(hub.Config)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["hub"] = &clientcmdapi.Cluster{Server: hub.Config.Host, CertificateAuthorityData: hub.Config.CAData}
	cfg.AuthInfos["nobody"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "nobody", Namespace: ns}
	cfg.CurrentContext = "hub"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{{"get", "jobsets"}, {"describe", "jobset", "x"}, {"why", "x"}, {"members"}} {
		out, errOut, code := runAs(t, kubeconfig, args...)
		if code != 1 || out != "" {
			t.Errorf("%v: want exit 1 and no output, got %d:\n%s", args, code, out)
		}
		want := "Error from server (Forbidden): "
		if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "system:serviceaccount:"+ns+":nobody") ||
			strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "Usage:") {
			t.Errorf("%v: want a Forbidden message naming the user, got:\n%s", args, errOut)
		}
	}
}
