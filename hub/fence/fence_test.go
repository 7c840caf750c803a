package fence_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientauthenticationv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/fence/fencetest"
)

var (
	hub    *testenv.Cluster
	member *testenv.Cluster
)

func TestMain(m *testing.M) {
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
