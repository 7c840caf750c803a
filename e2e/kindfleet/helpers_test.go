package kindfleet_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Labels and condition types as a user sees them.
const (
	jobSetNameLabel      = "jobset.sigs.k8s.io/jobset-name"
	jobIndexLabel        = "jobset.sigs.k8s.io/job-index"
	completionIndexKey   = "batch.kubernetes.io/job-completion-index"
	conditionCompleted   = "Completed"
	conditionFailed      = "Failed"
	conditionMemberStale = "MemberStatusStale"
	reasonAwaitingFence  = "AwaitingFence"
)

// placedOn is the member a hub JobSet runs on, as the hub records it in
// status.fleet (the CLUSTER column of kubectl get jobsets).
func placedOn(js *jobset.JobSet) string {
	if js.Status.Fleet == nil {
		return ""
	}
	return js.Status.Fleet.Cluster
}

// newNamespace creates a namespace on the hub for one test. Cleanup deletes
// the test's JobSets on the hub first, so the hub removes the member copies
// (what a user's delete does), then the namespace everywhere.
func newNamespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{}
	ns.Name = name
	if err := env.hub.c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s on the hub: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := env.hub.c.DeleteAllOf(ctx, &jobset.JobSet{}, client.InNamespace(name)); err != nil {
			t.Logf("cleanup: deleting JobSets in %s on the hub: %v", name, err)
		}
		err := poll(ctx, time.Second, func() (bool, string, error) {
			list := &jobset.JobSetList{}
			if err := env.hub.c.List(ctx, list, client.InNamespace(name)); err != nil {
				return false, "", err
			}
			return len(list.Items) == 0, fmt.Sprintf("%d JobSets left", len(list.Items)), nil
		})
		if err != nil {
			t.Logf("cleanup: JobSets in %s on the hub not gone: %v", name, err)
		}
		for _, kc := range append(env.memberList(), env.hub) {
			ns := &corev1.Namespace{}
			ns.Name = name
			if err := kc.c.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("cleanup: deleting namespace %s on %s: %v", name, kc.name, err)
			}
		}
	})
	return name
}

// applyToHub applies a manifest to the hub with kubectl, as a user does.
func applyToHub(t *testing.T, ns, manifest string) {
	t.Helper()
	if _, err := env.kubectlCmd(context.Background(), env.hub, []byte(manifest), "-n", ns, "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// poll calls f every interval until it is done, returns an error, or ctx
// ends; the error then carries f's last description of the state.
func poll(ctx context.Context, interval time.Duration, f func() (done bool, state string, err error)) error {
	var last string
	for {
		done, state, err := f()
		if err != nil {
			state = err.Error()
		}
		if done {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last state: %s", ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// eventually fails the test when f is not done within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() (bool, string, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll(ctx, time.Second, f); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}

func getHubJobSet(ctx context.Context, ns, name string) (*jobset.JobSet, error) {
	js := &jobset.JobSet{}
	return js, env.hub.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, js)
}

// describe is a one-line summary of a hub JobSet for failure messages.
func describe(js *jobset.JobSet) string {
	var conds []string
	for _, c := range js.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("placed on %q, restarts %d, terminal %q, conditions [%s]", placedOn(js), js.Status.Restarts, js.Status.TerminalState, strings.Join(conds, "; "))
}

// waitCompleted waits until the hub shows the JobSet Completed and returns
// it; a Failed JobSet fails the test at once.
func waitCompleted(t *testing.T, ns, name string, timeout time.Duration) *jobset.JobSet {
	t.Helper()
	var js *jobset.JobSet
	eventually(t, timeout, "hub JobSet "+ns+"/"+name+" Completed", func() (bool, string, error) {
		var err error
		if js, err = getHubJobSet(context.Background(), ns, name); err != nil {
			return false, "", err
		}
		if apimeta.IsStatusConditionTrue(js.Status.Conditions, conditionFailed) {
			t.Fatalf("hub JobSet %s/%s failed: %s", ns, name, describe(js))
		}
		return apimeta.IsStatusConditionTrue(js.Status.Conditions, conditionCompleted), describe(js), nil
	})
	return js
}

// pods lists the pods of a JobSet on a member.
func pods(ctx context.Context, kc *kindCluster, ns, jobSet string) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	err := kc.c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{jobSetNameLabel: jobSet})
	return list.Items, err
}

// podLog is a pod's (only container's) log.
func podLog(ctx context.Context, kc *kindCluster, ns, pod string) (string, error) {
	rc, err := kc.cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("log of %s/%s on %s: %w", ns, pod, kc.name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return string(data), err
}

// member returns the cluster a JobSet was placed on, failing the test if
// the name is not a member.
func member(t *testing.T, name string) *kindCluster {
	t.Helper()
	kc := env.members[name]
	if kc == nil {
		t.Fatalf("placed on %q, which is not a member of this fleet", name)
	}
	return kc
}

// otherMember is the member that is not name.
func otherMember(name string) *kindCluster {
	for _, m := range memberNames {
		if m != name {
			return env.members[m]
		}
	}
	return nil
}

// podByHostname finds the pod with that hostname (JobSet pods' hostnames
// are <jobset>-<replicatedJob>-<jobIndex>-<podIndex>).
func podByHostname(list []corev1.Pod, hostname string) *corev1.Pod {
	for i := range list {
		if list[i].Spec.Hostname == hostname {
			return &list[i]
		}
	}
	return nil
}
