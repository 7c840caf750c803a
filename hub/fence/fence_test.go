package fence_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientauthenticationv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	hubcomponent "github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/fence/fencetest"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

var (
	hub    *testenv.Cluster
	member *testenv.Cluster
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	var wg sync.WaitGroup
	var stopHub, stopMember func()
	wg.Go(func() { hub, stopHub = testenv.StartMain("hub") })
	wg.Go(func() { member, stopMember = testenv.StartMain("member", testenv.WithControllerManager()) })
	wg.Wait()
	code := m.Run()
	stopMember()
	stopHub()
	os.Exit(code)
}

// memberAccess is the hub's access to the member test cluster, as its admin.
func memberAccess(t *testing.T) (*fence.Access, *clusterinventory.ClusterProfile) {
	t.Helper()
	a, err := fence.New(fencetest.ProviderFile(t, clientauthenticationv1.ExecCredentialStatus{
		ClientCertificateData: string(member.Config.CertData), ClientKeyData: string(member.Config.KeyData),
	}), testenv.Scheme())
	if err != nil {
		t.Fatal(err)
	}
	p := &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: "member"}}
	p.Status.AccessProviders = fencetest.AccessTo(member.Config.Host, member.Config.CAData)
	return a, p
}

// fleetCopy creates on the member a copy of a hub JobSet, as an agent
// makes it, with one Job it controls. The Job carries a finalizer of the
// test's: it stays until the test lets it go, as a Job whose Pods take long
// to terminate does.
func fleetCopy(t *testing.T, ns, name string) (fleet.Origin, *batchv1.Job) {
	t.Helper()
	ctx := context.Background()
	if err := member.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	origin := fleet.Origin{Namespace: ns, Name: name, UID: types.UID("origin-" + name)}
	js := jstesting.MakeJobSet(ns, name).ReplicatedJob(
		jstesting.MakeReplicatedJob("workers").Replicas(1).RestartPolicy(corev1.RestartPolicyNever).Container("train", "busybox").Obj()).Obj()
	js.Labels = map[string]string{fleet.OriginUIDLabel: string(origin.UID), fleet.EpochLabel: "1"}
	js.Annotations = map[string]string{fleet.DispatchAnnotation: fleet.MemberNamespace("member") + "/" + fleet.DispatchName(ns, name)}
	js.Finalizers = []string{fleet.ReportFinalizer}
	if err := member.Client.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{jobset.JobSetNameKey: name, jobset.JobSetUIDKey: string(js.UID)}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-workers-0", Labels: labels, Finalizers: []string{holdFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: jobset.GroupVersion.String(), Kind: "JobSet", Name: name, UID: js.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "train", Image: "busybox"}}},
		}},
	}
	if err := member.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	return origin, job
}

const holdFinalizer = "test.fleet.jobset.x-k8s.io/hold"

func letGo(t *testing.T, job *batchv1.Job) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "removing the test's finalizer from the Job", func() error {
		cur := &batchv1.Job{}
		if err := member.Client.Get(context.Background(), client.ObjectKeyFromObject(job), cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		controllerutil.RemoveFinalizer(cur, holdFinalizer)
		return member.Client.Update(context.Background(), cur)
	})
}

// leftOnMember lists what of the copy is still on the member.
func leftOnMember(t *testing.T, origin fleet.Origin) string {
	t.Helper()
	ctx := context.Background()
	var left []string
	js := &jobset.JobSet{}
	if err := member.Client.Get(ctx, types.NamespacedName{Namespace: origin.Namespace, Name: origin.Name}, js); err == nil {
		left = append(left, fmt.Sprintf("JobSet (finalizers %v)", js.Finalizers))
	}
	jobs := &batchv1.JobList{}
	if err := member.Client.List(ctx, jobs, client.InNamespace(origin.Namespace)); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		left = append(left, fmt.Sprintf("Job %s (deleting %v, owners %d)", j.Name, j.DeletionTimestamp != nil, len(j.OwnerReferences)))
	}
	pods := &corev1.PodList{}
	if err := member.Client.List(ctx, pods, client.InNamespace(origin.Namespace)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		left = append(left, "Pod "+p.Name)
	}
	if len(left) == 0 {
		return ""
	}
	return fmt.Sprint(left)
}

// TestStopCountsJobsOfACopyDeletedWithoutForeground: a copy deleted in the
// background, or with orphan propagation, is gone long before its Jobs,
// which keep running. The hub's stop path does not call it stopped while
// any of its Jobs or Pods is left: it deletes the copy again in the
// foreground, deletes orphaned Jobs, and releases the copy only after.
func TestStopCountsJobsOfACopyDeletedWithoutForeground(t *testing.T) {
	for _, propagation := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationOrphan} {
		t.Run(string(propagation), func(t *testing.T) {
			a, p := memberAccess(t)
			ns := "team-" + strings.ToLower(string(propagation))
			origin, job := fleetCopy(t, ns, "train")
			ctx := context.Background()
			js := &jobset.JobSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: origin.Name}}
			if err := member.Client.Delete(ctx, js, client.PropagationPolicy(propagation)); err != nil {
				t.Fatal(err)
			}

			// The hub keeps stopping the copy and looking at it: while
			// the Job is there, the copy must never count as stopped.
			held := time.Now()
			for time.Since(held) < 5*time.Second {
				look(t, a, p, origin, func(c fence.Copy) {
					if !c.Exists {
						t.Fatalf("%s deletion: the copy counts as stopped while its Job is left: %s", propagation, leftOnMember(t, origin))
					}
				})
				time.Sleep(200 * time.Millisecond)
			}

			letGo(t, job)
			testenv.Eventually(t, 60*time.Second, "the copy stopped, nothing of it left", func() error {
				var stopped bool
				look(t, a, p, origin, func(c fence.Copy) { stopped = !c.Exists })
				if !stopped {
					return fmt.Errorf("the hub still sees the copy; on the member: %s", leftOnMember(t, origin))
				}
				if left := leftOnMember(t, origin); left != "" {
					return fmt.Errorf("the copy counts as stopped, but on the member: %s", left)
				}
				return nil
			})
		})
	}
}

// look asks the hub's access to stop the copy and, once a probe of the
// member finished, passes what it saw to check.
func look(t *testing.T, a *fence.Access, p *clusterinventory.ClusterProfile, origin fleet.Origin, check func(fence.Copy)) {
	t.Helper()
	if err := a.Stop(p, origin); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Probed():
	case <-time.After(2 * fence.ProbeTimeout):
		t.Fatal("no probe of the member finished")
	}
	c, err := a.Look(p, origin)
	if err != nil {
		t.Fatalf("looking at the member: %v", err)
	}
	check(c)
}

// authListener records the Authorization headers it receives.
type authListener struct {
	*httptest.Server
	mu   sync.Mutex
	auth []string
}

func listen(t *testing.T) *authListener {
	t.Helper()
	l := &authListener{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.Header.Get("Authorization"); h != "" {
			l.mu.Lock()
			l.auth = append(l.auth, h)
			l.mu.Unlock()
		}
		http.Error(w, "not a member", http.StatusServiceUnavailable)
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *authListener) authorizations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.auth...)
}

// TestAgentCannotRedirectHubAccess: an agent writes its ClusterProfile's
// status, but not the access providers the hub builds its member
// credentials from. A rogue agent that points them at a server of its own
// and then goes silent never receives the hub's credentials.
func TestAgentCannotRedirectHubAccess(t *testing.T) {
	ctx := context.Background()
	if err := testenv.InstallAccessPolicy(ctx, hub.Client, testenv.RepoRoot()); err != nil {
		t.Fatal(err)
	}
	const name = "rogue"
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName: name, HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	agentConfig, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(agentConfig, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	profileKey := types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: name}
	// writeStatus writes the profile's status as the agent.
	writeStatus := func(mutate func(*clusterinventory.ClusterProfileStatus), opts ...client.SubResourceUpdateOption) error {
		p := &clusterinventory.ClusterProfile{}
		if err := agent.Get(ctx, profileKey, p); err != nil {
			return err
		}
		mutate(&p.Status)
		return agent.Status().Update(ctx, p, opts...)
	}

	// The cluster manager gives the hub access to the member.
	legit, rogue := listen(t), listen(t)
	testenv.Eventually(t, 30*time.Second, "the admin setting the access providers", func() error {
		p := &clusterinventory.ClusterProfile{}
		if err := hub.Client.Get(ctx, profileKey, p); err != nil {
			return err
		}
		p.Status.AccessProviders = fencetest.AccessTo(legit.URL, nil)
		return hub.Client.Status().Update(ctx, p)
	})

	// The agent may not change them. The policy takes a moment to be
	// enforced after its creation: wait for it with dry runs, which change
	// nothing, then try for real.
	pointElsewhere := func(s *clusterinventory.ClusterProfileStatus) { s.AccessProviders = fencetest.AccessTo(rogue.URL, nil) }
	denied := func(err error) error {
		if err == nil {
			return errors.New("the agent may change status.accessProviders")
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "agents may not change status.accessProviders") {
			return fmt.Errorf("want the policy's denial, got %w", err)
		}
		return nil
	}
	if err := testenv.Poll(20*time.Second, func() error { return denied(writeStatus(pointElsewhere, client.DryRunAll)) }); err != nil {
		t.Errorf("rogue agent pointing the hub's access elsewhere (dry run): %v", err)
	}
	if err := denied(writeStatus(pointElsewhere)); err != nil {
		t.Errorf("rogue agent pointing the hub's access elsewhere: %v", err)
	}
	if err := writeStatus(func(s *clusterinventory.ClusterProfileStatus) {
		s.CredentialProviders = fencetest.AccessTo(rogue.URL, nil)
	}); err == nil {
		t.Errorf("the agent changed status.credentialProviders")
	}

	// Everything else agents write stays allowed.
	clusterID, err := membership.ClusterID(ctx, member.Client)
	if err != nil {
		t.Fatal(err)
	}
	report := func(s *clusterinventory.ClusterProfileStatus) {
		now := metav1.Now()
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: metav1.ConditionTrue, Reason: "Healthy"})
		s.Version.Kubernetes = "v1.37.0"
		s.Properties = []clusterinventory.Property{
			{Name: fleet.PropertyAllocatablePrefix + "cpu", Value: "8", LastObservedTime: now},
			{Name: fleet.PropertyFreePrefix + "cpu", Value: "8", LastObservedTime: now},
			{Name: fleet.ClusterIDProperty, Value: clusterID, LastObservedTime: now},
		}
	}
	if err := writeStatus(report); err != nil {
		t.Fatalf("the agent reporting its conditions, version and properties: %v", err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace(name), Name: fleet.HeartbeatLeaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if err := agent.Create(ctx, lease); err != nil {
		t.Fatal(err)
	}
	renewing, stopRenewing := context.WithCancel(ctx)
	defer stopRenewing()
	go func() {
		for renewing.Err() == nil {
			time.Sleep(300 * time.Millisecond)
			cur := &coordinationv1.Lease{}
			if agent.Get(renewing, client.ObjectKeyFromObject(lease), cur) == nil {
				cur.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
				_ = agent.Update(renewing, cur)
			}
		}
	}()

	// A hub with access to members runs a JobSet there.
	startHub(t, fencetest.ProviderFile(t, clientauthenticationv1.ExecCredentialStatus{Token: "hub-secret"}))
	ns := "team-rogue"
	if err := hub.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	js := jstesting.MakeJobSet(ns, "train").ManagedBy(fleet.ManagedByFleet).Annotation(fleet.PinnedClusterAnnotation, name).ReplicatedJob(
		jstesting.MakeReplicatedJob("workers").Replicas(1).RestartPolicy(corev1.RestartPolicyNever).Container("train", "busybox").
			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}).Obj()).Obj()
	if err := hub.Client.Create(ctx, js); err != nil {
		t.Fatal(err)
	}
	d := &fleet.JobSetDispatch{}
	testenv.Eventually(t, 30*time.Second, "the JobSet dispatched to "+name, func() error {
		if err := agent.Get(ctx, types.NamespacedName{Namespace: fleet.MemberNamespace(name), Name: fleet.DispatchName(ns, js.Name)}, d); err != nil {
			cur := &jobset.JobSet{}
			_ = hub.Client.Get(ctx, client.ObjectKeyFromObject(js), cur)
			return fmt.Errorf("%w; JobSet conditions %v", err, cur.Status.Conditions)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, "the agent accepting the dispatch", func() error {
		if err := agent.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		controllerutil.AddFinalizer(d, fleet.AgentFinalizer)
		return agent.Update(ctx, d)
	})

	// The agent goes silent: the hub uses its access, and only the one
	// the cluster manager gave it.
	stopRenewing()
	testenv.Eventually(t, 60*time.Second, "the hub using its access to the member", func() error {
		if len(legit.authorizations())+len(rogue.authorizations()) == 0 {
			return errors.New("no request with credentials yet")
		}
		return nil
	})
	if got := rogue.authorizations(); len(got) > 0 {
		t.Fatalf("the hub sent its member credentials to the server the agent chose: %q", got)
	}
	if got := legit.authorizations()[0]; got != "Bearer hub-secret" {
		t.Errorf("the hub sent Authorization %q to the member, want the exec plugin's token", got)
	}
}

// startHub runs the hub's controllers with access to members.
func startHub(t *testing.T, providerFile string) {
	t.Helper()
	opts := hubcomponent.DefaultOptions()
	opts.HeartbeatTimeout, opts.MemberLostTimeout = 2*time.Second, 4*time.Second
	opts.ClusterProfileProviderFile = providerFile
	mgr := hub.NewManager(t, opts.CacheOptions())
	if err := hubcomponent.Setup(mgr, opts); err != nil {
		t.Fatal(err)
	}
	testenv.RunManager(t, mgr)
}
