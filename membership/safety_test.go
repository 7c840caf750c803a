package membership_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// TestJoinIdentityPrivilegeAndNamespaces joins real members to a real hub
// and checks what an agent's join credentials may do, that one cluster name
// is held by one cluster, and that Join and Unjoin leave namespaces they did
// not create alone.
func TestJoinIdentityPrivilegeAndNamespaces(t *testing.T) {
	clusters := testenv.StartN(t, "identity-hub", "identity-a", "identity-b")
	hub, a, b := clusters[0], clusters[1], clusters[2]
	ctx := context.Background()
	inv := fleet.DefaultInventoryNamespace
	opts := func(name string) membership.Options {
		return membership.Options{
			ClusterName:  name,
			Labels:       map[string]string{"region": "eu"},
			HubServerURL: hub.Config.Host,
			HubCAData:    hub.Config.CAData,
			SkipCRDs:     true, // testenv installed them
		}
	}
	profile := func(name string) *clusterinventory.ClusterProfile {
		cp := &clusterinventory.ClusterProfile{}
		must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: inv, Name: name}, cp))
		return cp
	}
	idA, idB := kubeSystemUID(t, a.Client), kubeSystemUID(t, b.Client)

	withAllowed := opts("m1")
	withAllowed.AllowedNamespaces = []string{"team-a", "team-b"}
	kubeconfig, err := membership.Join(ctx, hub.Client, a.Client, withAllowed)
	must(t, err)
	cp := profile("m1")
	if diff := cmp.Diff(map[string]string{
		fleet.ClusterIDAnnotation:               idA,
		fleet.AllowedNamespacesAnnotation:       "team-a,team-b",
		membership.MemberNamespaceUIDAnnotation: namespaceUID(t, hub.Client, "fleet-member-m1"),
	}, cp.Annotations); diff != "" {
		t.Errorf("profile annotations (-want +got):\n%s", diff)
	}

	t.Run("the agent's token is short-lived and may only write its profile's status", func(t *testing.T) {
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
		must(t, err)
		if iat, exp := tokenTimes(t, cfg.BearerToken); exp.Sub(iat) != 24*time.Hour {
			t.Errorf("token lifetime %s, want the 24h default", exp.Sub(iat))
		}
		agentHub := clientFor(t, kubeconfig, testenv.Scheme())
		own := profile("m1")
		if err := agentHub.Get(ctx, client.ObjectKeyFromObject(own), &clusterinventory.ClusterProfile{}); err != nil {
			t.Errorf("get own ClusterProfile: %v", err)
		}
		status := own.DeepCopy()
		status.Status.Version.Kubernetes = "v1.37.0"
		if err := agentHub.Status().Patch(ctx, status, client.MergeFrom(own)); err != nil {
			t.Errorf("patch own ClusterProfile status: %v", err)
		}
		labels := own.DeepCopy()
		labels.Labels["gpu"] = "h100"
		spec := own.DeepCopy()
		spec.Spec.DisplayName = "forged"
		annotations := own.DeepCopy()
		annotations.Annotations[fleet.ClusterIDAnnotation] = "forged"
		forbidden := map[string]error{
			"patch own labels":                agentHub.Patch(ctx, labels, client.MergeFrom(own)),
			"patch own spec":                  agentHub.Patch(ctx, spec, client.MergeFrom(own)),
			"patch own cluster-id annotation": agentHub.Patch(ctx, annotations, client.MergeFrom(own)),
			"update own profile":              agentHub.Update(ctx, labels),
			"delete own profile":              agentHub.Delete(ctx, own.DeepCopy()),
			"token for another ServiceAccount": agentHub.SubResource("token").Create(ctx,
				&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-member-m1", Name: "default"}}, &authenticationv1.TokenRequest{}),
		}
		for what, err := range forbidden {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want 403 Forbidden, got %v", what, err)
			}
		}
		// It renews its own token.
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
		if err := agentHub.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-member-m1", Name: membership.AgentServiceAccount}}, tr); err != nil || tr.Status.Token == "" {
			t.Errorf("token for its own ServiceAccount: %v", err)
		}
	})

	t.Run("one cluster name, one cluster", func(t *testing.T) {
		_, err := membership.Join(ctx, hub.Client, b.Client, opts("m1"))
		if err == nil || !strings.Contains(err.Error(), "already joined by another cluster") {
			t.Fatalf("second cluster joining as m1: want a refusal, got %v", err)
		}
		if got := profile("m1").Annotations[fleet.ClusterIDAnnotation]; got != idA {
			t.Errorf("refused join changed the cluster ID to %s", got)
		}
		// The same cluster joins again (repair) without trouble, and an
		// empty allowlist removes the annotation.
		_, err = membership.Join(ctx, hub.Client, a.Client, opts("m1"))
		must(t, err)
		if _, ok := profile("m1").Annotations[fleet.AllowedNamespacesAnnotation]; ok {
			t.Error("join without AllowedNamespaces kept the allowlist")
		}
		forced := opts("m1")
		forced.Force = true
		_, err = membership.Join(ctx, hub.Client, b.Client, forced)
		must(t, err)
		if got := profile("m1").Annotations[fleet.ClusterIDAnnotation]; got != idB {
			t.Errorf("forced join: cluster ID %s, want %s", got, idB)
		}
		// The takeover revoked a's agent: its token no longer authenticates.
		oldAgent := clientFor(t, kubeconfig, testenv.Scheme())
		testenv.Eventually(t, 30*time.Second, "the old agent's token rejected", func() error {
			if err := oldAgent.Get(ctx, client.ObjectKey{Namespace: inv, Name: "m1"}, &clusterinventory.ClusterProfile{}); !apierrors.IsUnauthorized(err) {
				return fmt.Errorf("old agent reading its profile: want 401 Unauthorized, got %v", err)
			}
			return nil
		})
		if _, err := membership.Join(ctx, hub.Client, a.Client, opts("m1")); err == nil {
			t.Error("the old cluster took its name back without force")
		}
	})

	t.Run("join adopts no namespace it did not create; unjoin deletes none", func(t *testing.T) {
		// Someone's namespaces on the hub with member namespaces' names, one
		// of them carrying join's label (anyone who may create namespaces
		// may set it).
		must(t, hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-member-m3"}}))
		must(t, hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-member-m4",
			Labels: map[string]string{membership.CreatedByLabel: "join"}}}))
		for _, name := range []string{"m3", "m4"} {
			ns := "fleet-member-" + name
			_, err := membership.Join(ctx, hub.Client, a.Client, opts(name))
			if err == nil || !strings.Contains(err.Error(), "namespace "+ns+" exists but was not created by a join") {
				t.Errorf("join into a foreign hub namespace %s: want a refusal naming it, got %v", ns, err)
			}
			if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: membership.AgentServiceAccount}, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
				t.Errorf("refused join created the agent's ServiceAccount in %s: %v", ns, err)
			}
			if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: inv, Name: name}, &clusterinventory.ClusterProfile{}); !apierrors.IsNotFound(err) {
				t.Errorf("refused join created ClusterProfile %s: %v", name, err)
			}
			must(t, membership.Unjoin(ctx, hub.Client, a.Client, opts(name)))
			got := &corev1.Namespace{}
			must(t, hub.Client.Get(ctx, client.ObjectKey{Name: ns}, got))
			if got.DeletionTimestamp != nil {
				t.Errorf("unjoin deleted hub namespace %s, which join did not create", ns)
			}
		}
	})
}

func namespaceUID(t *testing.T, c client.Client, name string) string {
	t.Helper()
	ns := &corev1.Namespace{}
	must(t, c.Get(context.Background(), client.ObjectKey{Name: name}, ns))
	return string(ns.UID)
}

// TestJoinRefusesForeignAgentNamespace: a member namespace jobset-fleet-system
// that neither join nor the fleet's install created is not taken over; one
// the install created is used, and left in place by unjoin.
func TestJoinRefusesForeignAgentNamespace(t *testing.T) {
	clusters := testenv.StartN(t, "agentns-hub", "agentns-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	opts := membership.Options{ClusterName: "m1", HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.SystemNamespace}}
	must(t, member.Client.Create(ctx, ns))
	_, err := membership.Join(ctx, hub.Client, member.Client, opts)
	if err == nil || !strings.Contains(err.Error(), "namespace "+fleet.SystemNamespace) {
		t.Fatalf("join into a foreign member namespace: want a refusal naming it, got %v", err)
	}
	ns.Labels = map[string]string{"app.kubernetes.io/name": "jobset-fleet"}
	must(t, member.Client.Update(ctx, ns))
	_, err = membership.Join(ctx, hub.Client, member.Client, opts)
	must(t, err)
	must(t, membership.Unjoin(ctx, hub.Client, member.Client, opts))
	must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(ns), ns))
	if ns.DeletionTimestamp != nil {
		t.Error("unjoin deleted the namespace the install created")
	}
	if err := member.Client.Get(ctx, client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("unjoin left the hub kubeconfig Secret: %v", err)
	}
}

// TestUnjoinConfirmsCopiesStopped runs a member with kube-controller-manager
// (garbage collector): Unjoin deletes the fleet's copies, waits until they
// and their Jobs are gone, and only then marks the dispatches Deleted
// (reason Unjoined) with how each copy ended; with KeepWorkloads it leaves
// the copies running and marks nothing.
func TestUnjoinConfirmsCopiesStopped(t *testing.T) {
	hub := testenv.Start(t, "unjoin-hub")
	member := testenv.Start(t, "unjoin-member", testenv.WithControllerManager())
	ctx := context.Background()
	const hubFinalizer = "test.fleet.jobset.x-k8s.io/hub"
	opts := func(name string) membership.Options {
		return membership.Options{ClusterName: name, HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true, WaitTimeout: time.Minute}
	}

	// Two memberships of the same cluster: m1 is unjoined fully, m2 with
	// KeepWorkloads.
	for _, name := range []string{"m1", "m2"} {
		_, err := membership.Join(ctx, hub.Client, member.Client, opts(name))
		must(t, err)
	}
	dispatch := func(cluster, ns, name string, epoch int64) *fleet.JobSetDispatch {
		d := &fleet.JobSetDispatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace(cluster), Name: fleet.DispatchName(ns, name),
				Finalizers: []string{fleet.AgentFinalizer, hubFinalizer}},
			Spec: fleet.JobSetDispatchSpec{
				Origin: fleet.Origin{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
				Epoch:  epoch,
				JobSet: fleet.JobSetTemplate{Spec: jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{oneJob()}}},
			},
		}
		must(t, hub.Client.Create(ctx, d))
		return d
	}
	// copyOf is the agent's copy of d on the member, finished or not, with
	// one Job of its own.
	copyOf := func(d *fleet.JobSetDispatch, terminal string) *jobset.JobSet {
		must(t, client.IgnoreAlreadyExists(member.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.Spec.Origin.Namespace}})))
		js := jstesting.MakeJobSet(d.Spec.Origin.Namespace, d.Spec.Origin.Name).
			Label(fleet.OriginUIDLabel, string(d.Spec.Origin.UID)).Label(fleet.EpochLabel, fmt.Sprint(d.Spec.Epoch)).
			Annotation(fleet.DispatchAnnotation, d.Namespace+"/"+d.Name).Annotation(fleet.RestartsOffsetAnnotation, "2").
			Finalizers(fleet.ReportFinalizer).
			ReplicatedJob(oneJob()).
			ManagedBy("test.example.com/nobody"). // no JobSet controller runs here
			Obj()
		must(t, member.Client.Create(ctx, js))
		js.Status.Restarts = 1
		if terminal != "" {
			js.Status.TerminalState = terminal
			js.Status.Conditions = []metav1.Condition{{Type: terminal, Status: metav1.ConditionTrue, Reason: "Test", LastTransitionTime: metav1.Now()}}
		}
		must(t, member.Client.Status().Update(ctx, js))
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: js.Namespace, Name: js.Name + "-w-0", Labels: map[string]string{jobset.JobSetNameKey: js.Name}},
			Spec:       batchv1.JobSpec{Template: js.Spec.ReplicatedJobs[0].Template.Spec.Template},
		}
		job.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
		must(t, controllerRef(js, job))
		must(t, member.Client.Create(ctx, job))
		return js
	}
	done := dispatch("m1", "team", "done", 3)
	running := dispatch("m1", "team", "running", 1)
	kept := dispatch("m2", "team", "kept", 1)
	doneCopy, runningCopy, keptCopy := copyOf(done, string(jobset.JobSetCompleted)), copyOf(running, ""), copyOf(kept, "")

	// A copy runs: Unjoin refuses, naming it, and changes nothing.
	err := membership.Unjoin(ctx, hub.Client, member.Client, opts("m1"))
	if !errors.Is(err, membership.ErrWorkloadsRunning) || !strings.Contains(err.Error(), "team/running") ||
		strings.Contains(err.Error(), "team/done") || !strings.Contains(err.Error(), membership.UnjoinDrainFlag) {
		t.Errorf("unjoin with a running copy: want a refusal naming team/running only and --drain, got %v", err)
	}
	must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(runningCopy), &jobset.JobSet{}))
	must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, &clusterinventory.ClusterProfile{}))

	// Force deletes them, and says what it waits for.
	var progress bytes.Buffer
	forced := opts("m1")
	forced.Force, forced.Progress = true, &progress
	must(t, membership.Unjoin(ctx, hub.Client, member.Client, forced))
	if out := progress.String(); !strings.Contains(out, "Waiting for 2 fleet JobSets") || !strings.Contains(out, "team/running") ||
		!strings.HasSuffix(out, "The fleet's JobSets on the member are gone.\n") {
		t.Errorf("unjoin --force progress:\n%s\nwant the copies it waits for, then that they are gone", out)
	}
	for _, js := range []*jobset.JobSet{doneCopy, runningCopy} {
		if err := member.Client.Get(ctx, client.ObjectKeyFromObject(js), &jobset.JobSet{}); !apierrors.IsNotFound(err) {
			t.Errorf("copy %s after unjoin: want NotFound, got %v", client.ObjectKeyFromObject(js), err)
		}
		if err := member.Client.Get(ctx, client.ObjectKey{Namespace: js.Namespace, Name: js.Name + "-w-0"}, &batchv1.Job{}); !apierrors.IsNotFound(err) {
			t.Errorf("Job of %s after unjoin: want NotFound, got %v", client.ObjectKeyFromObject(js), err)
		}
	}
	for _, tc := range []struct {
		d        *fleet.JobSetDispatch
		terminal string
	}{{done, "Completed"}, {running, ""}} {
		d := &fleet.JobSetDispatch{}
		must(t, hub.Client.Get(ctx, client.ObjectKeyFromObject(tc.d), d))
		c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchDeleted)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleet.ReasonUnjoined {
			t.Errorf("%s: Deleted condition %+v, want True/%s", d.Name, c, fleet.ReasonUnjoined)
		}
		got := struct {
			Epoch     int64
			Restarts  int32
			Terminal  string
			Finalizer bool
		}{d.Status.ObservedEpoch, d.Status.JobSetStatus.Restarts, d.Status.JobSetStatus.TerminalState, slices.Contains(d.Finalizers, fleet.AgentFinalizer)}
		want := got
		want.Epoch, want.Restarts, want.Terminal, want.Finalizer = tc.d.Spec.Epoch, 3, tc.terminal, false
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: status after unjoin (-want +got):\n%s", d.Name, diff)
		}
	}

	// KeepWorkloads: the copy runs on, so its dispatch stays held by the
	// agent's finalizer and unmarked; the hub waits for proof. (This
	// expected the dispatch released before: that let the hub start a
	// second copy.)
	must(t, membership.Unjoin(ctx, hub.Client, member.Client, func() membership.Options {
		o := opts("m2")
		o.KeepWorkloads = true
		return o
	}()))
	js := &jobset.JobSet{}
	must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(keptCopy), js))
	if js.DeletionTimestamp != nil || slices.Contains(js.Finalizers, fleet.ReportFinalizer) {
		t.Errorf("KeepWorkloads: copy deleting=%v finalizers=%v, want running without ReportFinalizer", js.DeletionTimestamp != nil, js.Finalizers)
	}
	d := &fleet.JobSetDispatch{}
	must(t, hub.Client.Get(ctx, client.ObjectKeyFromObject(kept), d))
	if meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchDeleted) != nil || !slices.Contains(d.Finalizers, fleet.AgentFinalizer) {
		t.Errorf("KeepWorkloads: dispatch conditions %+v finalizers %v, want held by the agent's finalizer and not marked", d.Status.Conditions, d.Finalizers)
	}

	// The operator stopped the copy and says so, with the hub alone.
	confirm := opts("m2")
	confirm.ConfirmCopiesStopped = true
	must(t, membership.Unjoin(ctx, hub.Client, nil, confirm))
	must(t, hub.Client.Get(ctx, client.ObjectKeyFromObject(kept), d))
	c := meta.FindStatusCondition(d.Status.Conditions, fleet.DispatchDeleted)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleet.ReasonStopConfirmed ||
		!strings.Contains(c.Message, "--confirm-copies-stopped") || !strings.Contains(c.Message, "epoch 1") {
		t.Errorf("confirmed: Deleted condition %+v, want True/%s saying who stated what", c, fleet.ReasonStopConfirmed)
	}
	if d.DeletionTimestamp == nil || slices.Contains(d.Finalizers, fleet.AgentFinalizer) {
		t.Errorf("confirmed: dispatch deleting=%v finalizers=%v, want deleted and released", d.DeletionTimestamp != nil, d.Finalizers)
	}
	must(t, member.Client.Get(ctx, client.ObjectKeyFromObject(keptCopy), js))
	if js.DeletionTimestamp != nil {
		t.Error("unjoin --confirm-copies-stopped touched the member")
	}
}

// oneJob is the replicatedJob of the test's JobSets: one Job.
func oneJob() jobset.ReplicatedJob {
	return jstesting.MakeReplicatedJob("w").Replicas(1).Container("c", "busybox").Obj()
}

func controllerRef(owner *jobset.JobSet, obj metav1.Object) error {
	obj.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: jobset.GroupVersion.String(), Kind: "JobSet", Name: owner.Name, UID: owner.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}})
	return nil
}

func kubeSystemUID(t *testing.T, c client.Client) string {
	t.Helper()
	ns := &corev1.Namespace{}
	must(t, c.Get(context.Background(), client.ObjectKey{Name: metav1.NamespaceSystem}, ns))
	return string(ns.UID)
}

// tokenTimes reads iat and exp from a JWT's claims (no signature check).
func tokenTimes(t *testing.T, token string) (iat, exp time.Time) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	must(t, err)
	var claims struct{ Iat, Exp int64 }
	must(t, json.Unmarshal(payload, &claims))
	return time.Unix(claims.Iat, 0), time.Unix(claims.Exp, 0)
}
