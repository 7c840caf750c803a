package webhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	spokewebhook "github.com/jobset-fleet/jobset-fleet/spoke/webhook"
)

// One apiserver for the package, calling a webhook server in this process
// configured exactly like the agent's (SetupWithManager).
var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	// Errors only, unless WEBHOOK_TEST_VERBOSE asks for the webhook's V(3) logs.
	level := slog.LevelError
	if os.Getenv("WEBHOOK_TEST_VERBOSE") != "" {
		level = slog.Level(-3)
	}
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	c, stop := testenv.StartMain("webhook", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "webhook")))
	cluster = c
	ctx, cancel := context.WithCancel(context.Background())
	code := func() int {
		defer stop()
		defer cancel()
		if err := startWebhookServer(ctx, c); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func startWebhookServer(ctx context.Context, c *testenv.Cluster) error {
	return c.ServeWebhooks(ctx, spokewebhook.SetupWithManager)
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wh-"}}
	if err := cluster.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs, so create the ServiceAccount pods default to.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
	if err := cluster.Client.Create(context.Background(), sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return ns.Name
}

// seedJobSet is the pytorch example from the JobSet concepts page, verbatim
// apart from the namespace.
func seedJobSet(ns string) *jobset.JobSet {
	return jstesting.MakeJobSet(ns, "pytorch").ReplicatedJob(
		jstesting.MakeReplicatedJob("workers").Parallelism(4).Completions(4).BackoffLimit(0).Containers(corev1.Container{
			Name:    "pytorch",
			Image:   "gcr.io/k8s-staging-jobset/pytorch-resnet:latest",
			Ports:   []corev1.ContainerPort{{ContainerPort: 3389}},
			Env:     []corev1.EnvVar{{Name: "MASTER_ADDR", Value: "pytorch-workers-0-0.pytorch"}, {Name: "MASTER_PORT", Value: "3389"}},
			Command: []string{"bash", "-xc", "torchrun --nproc_per_node=1 --master_addr=$MASTER_ADDR --master_port=$MASTER_PORT resnet.py --backend=gloo\n"},
		}).Obj()).
		Obj()
}

func TestSeedJobSetDefaulted(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	if err := cluster.Client.Create(ctx, seedJobSet(ns)); err != nil {
		t.Fatalf("seed JobSet rejected: %v", err)
	}
	got := &jobset.JobSet{}
	if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "pytorch"}, got); err != nil {
		t.Fatal(err)
	}
	rj := got.Spec.ReplicatedJobs[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"replicas", rj.Replicas, int32(1)},
		{"groupName", rj.GroupName, jobset.DefaultGroupName},
		{"completionMode", ptr.Deref(rj.Template.Spec.CompletionMode, ""), batchv1.IndexedCompletion},
		{"restartPolicy", rj.Template.Spec.Template.Spec.RestartPolicy, corev1.RestartPolicyOnFailure},
		{"network.enableDNSHostnames", got.Spec.Network != nil && ptr.Deref(got.Spec.Network.EnableDNSHostnames, false), true},
		{"network.publishNotReadyAddresses", got.Spec.Network != nil && ptr.Deref(got.Spec.Network.PublishNotReadyAddresses, false), true},
		{"successPolicy.operator", got.Spec.SuccessPolicy != nil && got.Spec.SuccessPolicy.Operator == jobset.OperatorAll, true},
		{"startupPolicy", got.Spec.StartupPolicy != nil && got.Spec.StartupPolicy.StartupPolicyOrder == jobset.AnyOrder, true},
		// Like upstream, managedBy stays unset: the built-in controller.
		{"managedBy", got.Spec.ManagedBy == nil, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// The apiserver returns upstream JobSet's rejections, word for word
// (webhook names included).
func TestJobSetRejectedAsUpstream(t *testing.T) {
	const denied = `admission webhook "vjobset.kb.io" denied the request: `
	ctx := context.Background()
	ns := newNamespace(t)
	cases := []struct {
		name   string
		mutate func(js *jobset.JobSet)
		want   string
	}{
		{
			name:   "generated names too long",
			mutate: func(js *jobset.JobSet) { js.Name = strings.Repeat("p", 50) },
			want: denied + `JobSet.jobset.x-k8s.io "` + strings.Repeat("p", 50) + `" is invalid: spec.replicatedJobs[0].name: Invalid value: "` +
				strings.Repeat("p", 50) + `-workers-0": JobSet name is too long, pod names generated for this JobSet will exceed 63 characters`,
		},
		{
			name:   "coordinator names a missing replicatedJob",
			mutate: func(js *jobset.JobSet) { js.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "leader"} },
			want:   denied + `JobSet.jobset.x-k8s.io "bad-1" is invalid: <nil>: Internal error: coordinator replicatedJob leader does not exist`,
		},
		{
			name: "policies target unknown replicatedJobs",
			mutate: func(js *jobset.JobSet) {
				js.Spec.SuccessPolicy = &jobset.SuccessPolicy{Operator: jobset.OperatorAny, TargetReplicatedJobs: []string{"ghost"}}
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{
					{Name: "r", Action: jobset.RestartJobSet, TargetReplicatedJobs: []string{"workers", "phantom"}},
				}}
			},
			want: denied + `JobSet.jobset.x-k8s.io "bad-2" is invalid: [<nil>: Internal error: invalid replicatedJob name 'ghost' does not appear in .spec.ReplicatedJobs, ` +
				`<nil>: Internal error: invalid replicatedJob name 'phantom' in failure policy does not appear in .spec.ReplicatedJobs]`,
		},
		{
			name: "InPlaceRestart while its feature gate is off",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{RestartStrategy: jobset.InPlaceRestart}
			},
			want: denied + `JobSet.jobset.x-k8s.io "bad-3" is invalid: <nil>: Internal error: InPlaceRestart restart strategy cannot be set when InPlaceRestart feature gate is disabled`,
		},
		{
			name: "RestartJob while its feature gate is off",
			mutate: func(js *jobset.JobSet) {
				js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{{Action: jobset.RestartJob}}}
			},
			want: denied + `JobSet.jobset.x-k8s.io "bad-4" is invalid: <nil>: Internal error: RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions are not allowed when RestartJob feature gate is disabled`,
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := seedJobSet(ns)
			js.Name = fmt.Sprintf("bad-%d", i)
			tc.mutate(js)
			err := cluster.Client.Create(ctx, js)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want 422 Invalid, got %v", err)
			}
			if d := cmp.Diff(tc.want, err.Error()); d != "" {
				t.Errorf("rejection (-want +got):\n%s", d)
			}
		})
	}
}

// Unnamed failure policy rules are named by the defaulting webhook, then
// accepted.
func TestUnnamedRulesDefaulted(t *testing.T) {
	ctx := context.Background()
	js := seedJobSet(newNamespace(t))
	js.Spec.FailurePolicy = &jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{{Action: jobset.RestartJobSet}, {Action: jobset.FailJobSet}}}
	if err := cluster.Client.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range js.Spec.FailurePolicy.Rules {
		names = append(names, r.Name)
	}
	if d := cmp.Diff([]string{"failurePolicyRule0", "failurePolicyRule1"}, names); d != "" {
		t.Errorf("rule names (-want +got):\n%s", d)
	}
}

func TestJobSetUpdate(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	running := seedJobSet(ns)
	running.Name = "running"
	suspended := seedJobSet(ns)
	suspended.Name = "suspended"
	suspended.Spec.Suspend = ptr.To(true)
	for _, js := range []*jobset.JobSet{running, suspended} {
		if err := cluster.Client.Create(ctx, js); err != nil {
			t.Fatal(err)
		}
	}

	editTemplate := func(js *jobset.JobSet) {
		pt := &js.Spec.ReplicatedJobs[0].Template.Spec.Template
		pt.Labels = map[string]string{"kueue.x-k8s.io/podset": "workers"}
		pt.Annotations = map[string]string{"note": "placed"}
		pt.Spec.NodeSelector = map[string]string{"pool": "a100"}
		pt.Spec.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		pt.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/gate"}}
	}
	update := func(name string, mutate func(js *jobset.JobSet)) error {
		js := &jobset.JobSet{}
		if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, js); err != nil {
			t.Fatal(err)
		}
		mutate(js)
		return cluster.Client.Update(ctx, js)
	}

	t.Run("running: scheduling edit rejected", func(t *testing.T) {
		err := update("running", editTemplate)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.replicatedJobs: Invalid value: ") || !strings.HasSuffix(err.Error(), ": field is immutable") {
			t.Fatalf("want upstream's Invalid naming spec.replicatedJobs, got %v", err)
		}
	})
	t.Run("running: replicas change rejected", func(t *testing.T) {
		err := update("running", func(js *jobset.JobSet) { js.Spec.ReplicatedJobs[0].Replicas = 2 })
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.replicatedJobs: Invalid value: ") || !strings.HasSuffix(err.Error(), ": field is immutable") {
			t.Fatalf("want upstream's Invalid naming spec.replicatedJobs, got %v", err)
		}
	})
	t.Run("suspended: scheduling edit accepted", func(t *testing.T) {
		if err := update("suspended", editTemplate); err != nil {
			t.Fatalf("rejected: %v", err)
		}
		js := &jobset.JobSet{}
		if err := cluster.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "suspended"}, js); err != nil {
			t.Fatal(err)
		}
		if got := js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector["pool"]; got != "a100" {
			t.Errorf("nodeSelector not stored: %q", got)
		}
	})
	t.Run("suspended: image change rejected", func(t *testing.T) {
		err := update("suspended", func(js *jobset.JobSet) {
			js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Image = "evil"
		})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.replicatedJobs: Invalid value: ") || !strings.HasSuffix(err.Error(), ": field is immutable") {
			t.Fatalf("want upstream's Invalid naming spec.replicatedJobs, got %v", err)
		}
	})
	t.Run("resume together with a scheduling edit accepted", func(t *testing.T) {
		err := update("suspended", func(js *jobset.JobSet) {
			js.Spec.Suspend = ptr.To(false)
			js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "h100"}
		})
		if err != nil {
			t.Fatalf("rejected: %v", err)
		}
	})
}

const rackKey = "example.com/rack"

// exclusivePod is a pod as the Job controller creates it for a JobSet Job
// with exclusive placement (labels and annotations copied from the
// reconciler's pod template, plus the Job controller's index).
func exclusivePod(ns, name string, index int, jobUID types.UID, jobKey string) *corev1.Pod {
	idx := strconv.Itoa(index)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{
				jobset.JobSetNameKey:                 "js",
				jobset.ReplicatedJobNameKey:          "workers",
				jobset.JobIndexKey:                   "0",
				jobset.JobKey:                        jobKey,
				batchv1.JobCompletionIndexAnnotation: idx,
			},
			Annotations: map[string]string{
				jobset.ExclusiveKey:                  rackKey,
				batchv1.JobCompletionIndexAnnotation: idx,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "Job", Name: "js-workers-0", UID: jobUID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func TestExclusivePlacementPods(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	c := cluster.Client
	nodeName := "node-" + ns
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{rackKey: "rack-a"}}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), node) })

	jobUID := types.UID("uid-" + ns)
	jobKey := "key-" + ns

	leader := exclusivePod(ns, "js-workers-0-0-aaaaa", 0, jobUID, jobKey)
	if err := c.Create(ctx, leader); err != nil {
		t.Fatalf("leader rejected: %v", err)
	}
	a := leader.Spec.Affinity
	if a == nil || a.PodAffinity == nil || a.PodAntiAffinity == nil {
		t.Fatalf("leader has no exclusive affinity: %+v", a)
	}
	aff := a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	anti := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if len(aff) != 1 || aff[0].TopologyKey != rackKey || aff[0].LabelSelector.MatchExpressions[0].Values[0] != jobKey {
		t.Errorf("leader pod affinity = %+v, want same-%s affinity to job-key %s", aff, rackKey, jobKey)
	}
	if len(anti) != 1 || anti[0].TopologyKey != rackKey || anti[0].LabelSelector.MatchExpressions[1].Operator != metav1.LabelSelectorOpNotIn {
		t.Errorf("leader pod anti-affinity = %+v, want anti-affinity to other job-keys", anti)
	}

	follower := func(name string, index int) *corev1.Pod { return exclusivePod(ns, name, index, jobUID, jobKey) }

	err := c.Create(ctx, follower("js-workers-0-1-bbbbb", 1))
	if err == nil {
		t.Fatal("follower admitted before its leader was scheduled")
	}
	t.Logf("follower rejected: %v", err)
	// Upstream's rejection: the mutating webhook could not give the
	// follower its leader's domain.
	if want := `admission webhook "vpod.kb.io" denied the request: follower pod node selector not set`; err.Error() != want {
		t.Errorf("rejection %q, want %q", err, want)
	}

	// Schedule the leader the way the scheduler does: through the binding subresource.
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: leader.Name},
		Target:     corev1.ObjectReference{Kind: "Node", Name: nodeName},
	}
	if err := c.SubResource("binding").Create(ctx, leader, binding); err != nil {
		t.Fatalf("binding leader: %v", err)
	}

	f := follower("js-workers-0-1-ccccc", 1)
	if err := c.Create(ctx, f); err != nil {
		t.Fatalf("follower rejected after its leader was scheduled: %v", err)
	}
	if got := f.Spec.NodeSelector[rackKey]; got != "rack-a" {
		t.Errorf("follower nodeSelector[%s] = %q, want rack-a", rackKey, got)
	}
	if f.Spec.Affinity != nil {
		t.Errorf("follower got affinity %+v, want only a nodeSelector", f.Spec.Affinity)
	}

	// A follower that asks for another rack is put in its leader's rack.
	f2 := follower("js-workers-0-2-ddddd", 2)
	f2.Spec.NodeSelector = map[string]string{rackKey: "rack-z", "other": "kept"}
	if err := c.Create(ctx, f2); err != nil {
		t.Fatalf("follower rejected: %v", err)
	}
	if f2.Spec.NodeSelector[rackKey] != "rack-a" || f2.Spec.NodeSelector["other"] != "kept" {
		t.Errorf("follower nodeSelector = %v, want rack-a and the user's other key", f2.Spec.NodeSelector)
	}

	// A follower of a different Job incarnation (same job-key after a JobSet
	// restart, new Job UID) must not follow the old leader.
	stale := exclusivePod(ns, "js-workers-0-1-eeeee", 1, "new-job-uid", jobKey)
	if err := c.Create(ctx, stale); err == nil {
		t.Error("follower of a new Job incarnation admitted using the previous incarnation's leader")
	}

	// Pods without exclusive placement are not placed, only labelled with
	// their priority (the apiserver's Priority plugin sets one on every
	// pod; 0 without a priority class).
	plain := follower("js-workers-0-3-fffff", 3)
	delete(plain.Annotations, jobset.ExclusiveKey)
	if err := c.Create(ctx, plain); err != nil {
		t.Fatalf("non-exclusive JobSet pod rejected: %v", err)
	}
	if plain.Spec.NodeSelector != nil || plain.Spec.Affinity != nil {
		t.Errorf("non-exclusive pod placed: %+v", plain.Spec)
	}
	if plain.Spec.Priority == nil || plain.Labels[jobset.PriorityKey] != fmt.Sprint(*plain.Spec.Priority) {
		t.Errorf("priority %v, label %s=%q: want the label to carry the priority", plain.Spec.Priority, jobset.PriorityKey, plain.Labels[jobset.PriorityKey])
	}
	strategy := follower("js-workers-0-4-ggggg", 4)
	strategy.Annotations[jobset.NodeSelectorStrategyKey] = "true"
	if err := c.Create(ctx, strategy); err != nil {
		t.Fatalf("node-selector-strategy pod rejected: %v", err)
	}
	if strategy.Spec.NodeSelector != nil {
		t.Errorf("node-selector-strategy pod mutated: %v", strategy.Spec.NodeSelector)
	}
}

// podWebhookCalls counts admission requests the pod webhooks served, from
// controller-runtime's webhook metrics.
func podWebhookCalls(t *testing.T) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range families {
		if mf.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && strings.HasSuffix(l.GetValue(), "-v1-pod") {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// The apiserver must not call the pod webhooks for pods that are not a
// JobSet's, nor for the node-selector strategy, and the validating webhook
// only for pods using exclusive placement: objectSelector and
// matchConditions filter them out, so a webhook outage or slowness cannot
// affect them. A JobSet pod without exclusive placement goes through the
// mutating webhook only (its priority label).
func TestPodWebhookScope(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	c := cluster.Client

	before := podWebhookCalls(t)
	plain := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain", Annotations: map[string]string{jobset.ExclusiveKey: rackKey}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	nonExclusive := exclusivePod(ns, "non-exclusive", 1, "uid-x", "key-x")
	delete(nonExclusive.Annotations, jobset.ExclusiveKey)
	strategy := exclusivePod(ns, "strategy", 1, "uid-x", "key-x")
	strategy.Annotations[jobset.NodeSelectorStrategyKey] = "true"
	for _, p := range []*corev1.Pod{plain, nonExclusive, strategy} {
		if err := c.Create(ctx, p); err != nil {
			t.Fatalf("pod %s rejected: %v", p.Name, err)
		}
	}
	if got := podWebhookCalls(t) - before; got != 1 {
		t.Errorf("pod webhooks called %v times, want once (mutating, for the non-exclusive JobSet pod)", got)
	}
	before = podWebhookCalls(t)

	// Sanity check that the counter does count: an exclusive leader goes
	// through both pod webhooks.
	if err := c.Create(ctx, exclusivePod(ns, "leader", 0, "uid-y", "key-y")); err != nil {
		t.Fatal(err)
	}
	if got := podWebhookCalls(t) - before; got != 2 {
		t.Errorf("exclusive leader: pod webhooks called %v times, want 2 (mutating + validating)", got)
	}
}

// volumeClaimPolicies are checked at creation as upstream checks them,
// against PVCs that already exist too.
func TestVolumeClaimPoliciesAdmission(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	claim := func() corev1.PersistentVolumeClaim {
		return corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
	}
	withClaim := func(name string, retention jobset.RetentionPolicyType, mounted bool) *jobset.JobSet {
		js := seedJobSet(ns)
		js.Name = name
		js.Spec.VolumeClaimPolicies = []jobset.VolumeClaimPolicy{{
			Templates:       []corev1.PersistentVolumeClaim{claim()},
			RetentionPolicy: &jobset.VolumeRetentionPolicy{WhenDeleted: ptr.To(retention)},
		}}
		if mounted {
			c := &js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0]
			c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}
		return js
	}

	err := cluster.Client.Create(ctx, withClaim("unmounted", jobset.RetentionPolicyDelete, false))
	if err == nil || !strings.HasSuffix(err.Error(), ": replicatedJob containers don't have a matching volumeMount: data from VolumeClaimPolicies") {
		t.Errorf("unmounted claim: got %v, want upstream's rejection", err)
	}

	// The template is adopted only if the PVC is exactly it and retained.
	existing := claim()
	existing.Name, existing.Namespace = "data-adopt", ns
	if err := cluster.Client.Create(ctx, &existing); err != nil {
		t.Fatal(err)
	}
	err = cluster.Client.Create(ctx, withClaim("adopt", jobset.RetentionPolicyDelete, true))
	want := `admission webhook "vjobset.kb.io" denied the request: JobSet.jobset.x-k8s.io "adopt" is invalid: `
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "spec.volumeClaimPolicies[0].template[0].spec: Invalid value: ") ||
		!strings.Contains(err.Error(), `spec.volumeClaimPolicies[0].retentionPolicy.whenDeleted: Invalid value: "Delete": retentionPolicy must be retain when PVC exists`) {
		t.Errorf("existing PVC: got %v, want upstream's two rejections (the stored PVC spec is defaulted, so it differs)", err)
	}
}

// With ElasticJobSet, a running JobSet's parallelism and completions may
// change together; without it, not at all. Gated: not parallel.
func TestElasticJobSetAdmission(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	js := seedJobSet(ns)
	if err := cluster.Client.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	scale := func(parallelism, completions int32) error {
		got := &jobset.JobSet{}
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(js), got); err != nil {
			t.Fatal(err)
		}
		s := &got.Spec.ReplicatedJobs[0].Template.Spec
		s.Parallelism, s.Completions = ptr.To(parallelism), ptr.To(completions)
		return cluster.Client.Update(ctx, got)
	}
	if err := scale(8, 8); err == nil || !strings.HasSuffix(err.Error(), ": field is immutable") {
		t.Errorf("gate off: got %v, want field is immutable", err)
	}
	features.SetForTest(t, features.ElasticJobSet, true)
	if err := scale(8, 8); err != nil {
		t.Errorf("gate on: scaling rejected: %v", err)
	}
	want := `admission webhook "vjobset.kb.io" denied the request: JobSet.jobset.x-k8s.io "pytorch" is invalid: spec.replicatedJobs[0].template.spec.completions: Invalid value: 6: completions must be equal to parallelism for Elastic Indexed Jobs`
	if err := scale(8, 6); err == nil || err.Error() != want {
		t.Errorf("gate on, unequal: got %v, want %q", err, want)
	}
}
