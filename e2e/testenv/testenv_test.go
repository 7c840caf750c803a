package testenv_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

func indexedJob(name string, completions int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: batchv1.JobSpec{
			CompletionMode: ptr.To(batchv1.IndexedCompletion),
			Completions:    ptr.To(completions),
			Parallelism:    ptr.To(completions),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
			}},
		},
	}
}

func TestTwoClustersSideBySide(t *testing.T) {
	ctx := context.Background()
	clusters := testenv.StartN(t, "alpha", "beta")
	alpha, beta := clusters[0], clusters[1]
	if alpha.Config.Host == beta.Config.Host {
		t.Fatalf("both clusters serve at %s", alpha.Config.Host)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "only-in-alpha"}}
	if err := alpha.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	err := beta.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("object created in alpha: want NotFound in beta, got %v", err)
	}
	// Both have the fleet's CRDs and the cluster-inventory ones.
	for _, c := range clusters {
		for _, crd := range []string{"jobsets.jobset.x-k8s.io", "jobsetdispatches.fleet.jobset.x-k8s.io", "clusterprofiles.multicluster.x-k8s.io", "placementdecisions.multicluster.x-k8s.io"} {
			out, err := exec.Command(mustBinary(t, "kubectl"), "--kubeconfig", c.KubeconfigPath, "get", "crd", crd, "-o", "name").CombinedOutput()
			if err != nil {
				t.Errorf("%s: kubectl get crd %s: %v\n%s", c.Name, crd, err, out)
			}
		}
	}
}

func TestControllerManagerRunsJobsAndCascades(t *testing.T) {
	ctx := context.Background()
	c := testenv.Start(t, "kcm", testenv.WithControllerManager())
	job := indexedJob("cascade", 2)
	if err := c.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	pods := &corev1.PodList{}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Client.List(ctx, pods, client.InNamespace("default"), client.MatchingLabels{"job-name": "cascade"}); err != nil {
			return false, err
		}
		return len(pods.Items) == 2, nil
	})
	if err != nil {
		t.Fatalf("the Job controller made %d pods, want 2: %v\n%s", len(pods.Items), err, tail(c.ControllerManagerLog()))
	}
	if err := c.Client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Client.List(ctx, pods, client.InNamespace("default"), client.MatchingLabels{"job-name": "cascade"}); err != nil {
			return false, err
		}
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(job), &batchv1.Job{})
		return len(pods.Items) == 0 && apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("foreground deletion did not remove the Job and its %d pods: %v", len(pods.Items), err)
	}
}

func TestKwokClusterRunsIndexedJobToComplete(t *testing.T) {
	ctx := context.Background()
	k := testenv.StartKwok(t, "testenv-kwok", testenv.KwokOptions{})
	resources, err := testenv.ParseResources("cpu=8,memory=32Gi,nvidia.com/gpu=4")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.AddNodes(ctx, "node", 2, testenv.NodeSpec{Labels: map[string]string{"rack": "r1"}, Resources: resources}); err != nil {
		t.Fatal(err)
	}
	job := indexedJob("indexed", 3)
	if err := k.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := k.Client.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return false, err
		}
		for _, cond := range job.Status.Conditions {
			if cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Job did not complete: %v; status %+v", err, job.Status)
	}
	if job.Status.Succeeded != 3 || job.Status.CompletedIndexes != "0-2" {
		t.Errorf("succeeded=%d completedIndexes=%q, want 3 and 0-2", job.Status.Succeeded, job.Status.CompletedIndexes)
	}
	// kubectl from bin/ talks to it, and the version ldflags make it happy.
	out, err := exec.Command(mustBinary(t, "kubectl"), "--kubeconfig", k.KubeconfigPath, "--context", k.Context, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Server Version: v1.37.2") {
		t.Errorf("kubectl version: %v\n%s", err, out)
	}
}

func mustBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := testenv.Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Sprintf("kube-controller-manager log (tail):\n%s", strings.Join(lines, "\n"))
}
