package kueuemember_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestHubSuspendStopsMemberKueueCopy: member-2's Kueue admits and runs a
// JobSet's copy. The user suspends the JobSet on the hub: the copy stops
// on member-2 (its Jobs suspended, its Pods gone, its Workload inactive
// and its quota released) and the hub JobSet says so (Suspended, no active
// Job: what the hub's Kueue also waits for before it counts a preempted
// JobSet's quota as free, and which it never shows while Pods of the copy
// live). The user resumes it: member-2's Kueue admits
// the copy again and it runs. The copy never leaves member-2.
func TestHubSuspendStopsMemberKueueCopy(t *testing.T) {
	ctx := context.Background()
	ns, queue := "kueue-suspend", "team-s"
	create(t, hub.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	for _, mb := range members {
		setupQueue(t, mb, ns, queue, map[string]string{"member-1": "1", "member-2": "4"}[mb.name])
	}
	awaitQuotas(t, ns, queue)
	m2 := members[1]

	js := queuedJobSet(ns, "train", queue, "2", "")
	create(t, hub.Client, js)
	t.Cleanup(func() { _ = hub.Client.Delete(ctx, js) })
	testenv.Eventually(t, timeout, "train admitted and running on member-2", func() error {
		if err := runningOn(t, m2, js); err != nil {
			return err
		}
		if n := activeJobs(get(t, js)); n == 0 {
			return fmt.Errorf("the hub JobSet shows no active Job yet")
		}
		return nil
	})

	// The user suspends it on the hub.
	setSuspend(t, js, true)
	testenv.Eventually(t, timeout, "the copy stopped on member-2 and the hub says so", func() error {
		// The hub's view first: what it shows must already hold on the
		// member.
		h := get(t, js)
		if n := copies(t, js); n != 1 || copyOn(t, m2, js) == nil {
			return fmt.Errorf("%d copies, want the one on member-2", n)
		}
		c := copyOn(t, m2, js)
		jobs, pods := jobsAndPods(t, m2, c)
		if activeJobs(h) == 0 && len(pods) > 0 {
			t.Fatalf("the hub JobSet shows no active Job while %d Pods of the copy live on member-2", len(pods))
		}
		if !c.IsSuspended() {
			return fmt.Errorf("the copy on member-2 is not suspended")
		}
		for _, j := range jobs {
			if !ptr.Deref(j.Spec.Suspend, false) {
				return fmt.Errorf("Job %s not suspended", j.Name)
			}
		}
		if len(pods) > 0 {
			return fmt.Errorf("%d Pods of the copy still on member-2", len(pods))
		}
		wl := workloadOf(t, m2, c)
		if ptr.Deref(wl.Spec.Active, true) || meta.IsStatusConditionTrue(wl.Status.Conditions, "QuotaReserved") {
			return fmt.Errorf("Workload %s active=%v, conditions %+v; want inactive without quota", wl.Metadata.Name, wl.Spec.Active, wl.Status.Conditions)
		}
		if used := reservedCPU(t, m2, queue); !used.IsZero() {
			return fmt.Errorf("ClusterQueue %s still reserves %s cpu", queue, used.String())
		}
		if n := activeJobs(h); n != 0 {
			return fmt.Errorf("the hub JobSet shows %d active Jobs", n)
		}
		if !meta.IsStatusConditionTrue(h.Status.Conditions, string(jobset.JobSetSuspended)) {
			return fmt.Errorf("the hub JobSet is not Suspended: %+v", h.Status.Conditions)
		}
		return nil
	})
	testenv.Consistently(t, 3*time.Second, "member-2's Kueue does not resume the copy", func() error {
		if c := copyOn(t, m2, js); c == nil || !c.IsSuspended() {
			return fmt.Errorf("copy on member-2 gone or resumed")
		}
		return nil
	})

	// The user resumes it: Kueue admits it again.
	setSuspend(t, js, false)
	testenv.Eventually(t, timeout, "train admitted again and running on member-2", func() error {
		if err := runningOn(t, m2, js); err != nil {
			return err
		}
		wl := workloadOf(t, m2, copyOn(t, m2, js))
		if !meta.IsStatusConditionTrue(wl.Status.Conditions, "Admitted") || wl.Metadata.Annotations[agent.KueueDeactivatedAnnotation] != "" {
			return fmt.Errorf("Workload %s not admitted, or still marked: %v %+v", wl.Metadata.Name, wl.Metadata.Annotations, wl.Status.Conditions)
		}
		h := get(t, js)
		if n := activeJobs(h); n == 0 || meta.IsStatusConditionTrue(h.Status.Conditions, string(jobset.JobSetSuspended)) {
			return fmt.Errorf("the hub JobSet shows %d active Jobs, conditions %+v", n, h.Status.Conditions)
		}
		return nil
	})
	if n := copies(t, js); n != 1 {
		t.Errorf("%d copies of train, want 1", n)
	}
}

// runningOn says whether js's copy on mb runs: resumed by Kueue, its Jobs
// unsuspended and their Pods created.
func runningOn(t *testing.T, mb *member, js *jobset.JobSet) error {
	t.Helper()
	c := copyOn(t, mb, js)
	if c == nil || c.IsSuspended() {
		return fmt.Errorf("copy on %s missing or suspended (exists: %v)", mb.name, c != nil)
	}
	if err := jobsCreated(t, mb, c); err != nil {
		return err
	}
	if _, pods := jobsAndPods(t, mb, c); len(pods) == 0 {
		return fmt.Errorf("no Pod of the copy on %s", mb.name)
	}
	return nil
}

func setSuspend(t *testing.T, js *jobset.JobSet, suspend bool) {
	t.Helper()
	h := get(t, js)
	patch := client.MergeFrom(h.DeepCopy())
	h.Spec.Suspend = ptr.To(suspend)
	if err := hub.Client.Patch(context.Background(), h, patch); err != nil {
		t.Fatalf("setting suspend=%v on the hub JobSet: %v", suspend, err)
	}
}

// activeJobs is the active Jobs a JobSet's status counts.
func activeJobs(js *jobset.JobSet) int32 {
	var n int32
	for _, s := range js.Status.ReplicatedJobsStatus {
		n += s.Active
	}
	return n
}

// jobsAndPods are the Jobs copy c controls on mb and their Pods not
// being deleted.
func jobsAndPods(t *testing.T, mb *member, c *jobset.JobSet) ([]batchv1.Job, []corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	var jobs batchv1.JobList
	if err := mb.cluster.Client.List(ctx, &jobs, client.InNamespace(c.Namespace), client.MatchingLabels{jobset.JobSetNameKey: c.Name}); err != nil {
		t.Fatal(err)
	}
	var owned []batchv1.Job
	var pods []corev1.Pod
	for _, j := range jobs.Items {
		if !metav1.IsControlledBy(&j, c) {
			continue
		}
		owned = append(owned, j)
		var list corev1.PodList
		if err := mb.cluster.Client.List(ctx, &list, client.InNamespace(c.Namespace), client.MatchingLabels{"batch.kubernetes.io/controller-uid": string(j.UID)}); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
	}
	return owned, pods
}

// kueueWorkload is what the test reads of a Workload.
type kueueWorkload struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		Active *bool `json:"active"`
	} `json:"spec"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions"`
	} `json:"status"`
}

// workloadOf is the Workload member mb's Kueue made for copy c.
func workloadOf(t *testing.T, mb *member, c *jobset.JobSet) kueueWorkload {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("kueue.x-k8s.io/v1beta2")
	list.SetKind("WorkloadList")
	if err := mb.cluster.Client.List(context.Background(), list, client.InNamespace(c.Namespace)); err != nil {
		t.Fatal(err)
	}
	for _, u := range list.Items {
		if !metav1.IsControlledBy(&u, c) {
			continue
		}
		var wl kueueWorkload
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &wl); err != nil {
			t.Fatal(err)
		}
		return wl
	}
	t.Fatalf("no Workload of %s/%s on %s", c.Namespace, c.Name, mb.name)
	return kueueWorkload{}
}

// reservedCPU is the cpu ClusterQueue name reserves on mb.
func reservedCPU(t *testing.T, mb *member, name string) resource.Quantity {
	t.Helper()
	cq := kueueObject("ClusterQueue", "", name, nil)
	if err := mb.cluster.Client.Get(context.Background(), client.ObjectKeyFromObject(cq), cq); err != nil {
		t.Fatal(err)
	}
	var status struct {
		FlavorsReservation []struct {
			Resources []struct {
				Name  corev1.ResourceName `json:"name"`
				Total resource.Quantity   `json:"total"`
			} `json:"resources"`
		} `json:"flavorsReservation"`
	}
	raw, _, _ := unstructured.NestedMap(cq.Object, "status")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &status); err != nil {
		t.Fatal(err)
	}
	var sum resource.Quantity
	for _, f := range status.FlavorsReservation {
		for _, r := range f.Resources {
			if r.Name == corev1.ResourceCPU {
				sum.Add(r.Total)
			}
		}
	}
	return sum
}
