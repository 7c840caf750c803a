package jobset

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// In-place restart (InPlaceRestart gate, upstream KEP 467): an agent in each
// pod restarts its worker in place and reports the restart attempt it is at
// in the pod's jobset.sigs.k8s.io/in-place-restart-attempt annotation. The
// controller only publishes two numbers in the JobSet status, which the
// agents read: previousInPlaceRestartAttempt (pods at or below it must
// restart) and currentInPlaceRestartAttempt (pods at it may start working).

func inPlaceRestartStrategy(js *jobset.JobSet) bool {
	return js.Spec.FailurePolicy != nil && js.Spec.FailurePolicy.RestartStrategy == jobset.InPlaceRestart
}

// inPlaceRestart updates the two attempts from the pods, or fails the
// JobSet when a container or a restart attempt went past maxRestarts.
func (p *Plan) inPlaceRestart(js *jobset.JobSet, pods []corev1.Pod) error {
	maxRestarts := js.Spec.FailurePolicy.MaxRestarts
	// A container failing too fast to ever reach the barrier shows only in
	// its restart count.
	if maxContainerRestarts(pods) > maxRestarts {
		p.fail(ReasonReachedMaxRestarts, MessageReachedMaxRestarts)
		return nil
	}
	attempts, err := podRestartAttempts(pods)
	if err != nil {
		return err
	}
	// Whole-JobSet restarts that do not count towards the maximum advance
	// the attempts too; only the rest count.
	highest := int32(0)
	if len(attempts) > 0 {
		highest = slices.Max(attempts)
	}
	if highest-(p.Status.Restarts-p.Status.RestartsCountTowardsMax) > maxRestarts {
		p.fail(ReasonReachedMaxRestarts, MessageReachedMaxRestarts)
		return nil
	}
	total, err := totalPods(js)
	if err != nil {
		return err
	}
	if len(attempts) == total && allEqual(attempts) {
		// Every pod is at the same attempt: lift the barrier.
		if ptr.Deref(p.Status.CurrentInPlaceRestartAttempt, -1) != attempts[0] {
			p.Status.CurrentInPlaceRestartAttempt = ptr.To(attempts[0])
		}
		return nil
	}
	if len(attempts) == 0 || highest == 0 {
		return nil // just created
	}
	// Pods lag behind the newest attempt: ask them to restart, never
	// lowering what was asked before.
	previous := highest - 1
	if cur := p.Status.PreviousInPlaceRestartAttempt; cur != nil && previous <= *cur {
		return nil
	}
	p.Status.PreviousInPlaceRestartAttempt = ptr.To(previous)
	return nil
}

func maxContainerRestarts(pods []corev1.Pod) int32 {
	var highest int32
	for _, pod := range pods {
		for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
			for _, s := range statuses {
				highest = max(highest, s.RestartCount)
			}
		}
	}
	return highest
}

// podRestartAttempts reads the attempts the agents reported. Failed pods
// (their replacement may already run) and pods whose agent has not reported
// yet are skipped.
func podRestartAttempts(pods []corev1.Pod) ([]int32, error) {
	attempts := []int32{}
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodFailed {
			continue
		}
		raw, ok := pod.Annotations[jobset.InPlaceRestartAttemptKey]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid value for annotation %s, must be non-negative integer", jobset.InPlaceRestartAttemptKey)
		}
		attempts = append(attempts, int32(n))
	}
	return attempts, nil
}

// totalPods is how many pods the JobSet runs; admission makes completions
// and parallelism equal for in-place restart.
func totalPods(js *jobset.JobSet) (int, error) {
	total := 0
	for _, rjob := range js.Spec.ReplicatedJobs {
		s := rjob.Template.Spec
		if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism {
			return 0, fmt.Errorf("%s: in-place restart requires jobTemplate.spec.completions == jobTemplate.spec.parallelism != nil", rjob.Name)
		}
		total += int(rjob.Replicas * *s.Parallelism)
	}
	return total, nil
}

func allEqual(values []int32) bool {
	if len(values) == 0 {
		return false
	}
	for _, v := range values {
		if v != values[0] {
			return false
		}
	}
	return true
}
