package kueuehub_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestKueueCohortBorrowAndReclaim: two ClusterQueues in one cohort, each
// with a nominal quota of one JobSet, share the fleet (Kueue's own
// configuration: a cohort, reclaimWithinCohort). While team-b is idle,
// team-a borrows its quota and runs two JobSets on members. When team-b
// submits one, Kueue reclaims: one of team-a's JobSets is suspended, its
// member copy is told to suspend, and team-b's is dispatched only once
// the member reports that copy's Pods gone. Then each team runs one. When
// team-b's completes, team-a borrows again: the suspended one resumes on
// its member.
func TestKueueCohortBorrowAndReclaim(t *testing.T) {
	startHub(t)
	ns := namespace(t, "kueue-cohort")
	pool := flavor{Name: "cohort-pool", NodeLabels: map[string]any{poolLabel: "cohort"}, CPU: "1"}
	for _, team := range []string{"team-a", "team-b"} {
		clusterQueueOf(t, ns, team, map[string]any{"cohortName": "fleet-cohort", "preemption": map[string]any{"reclaimWithinCohort": "Any"}}, pool)
	}
	join(t, "cohort-m", "8", "cohort", map[string]string{"kueue-test": "cohort"})

	// team-a alone: its second JobSet borrows team-b's idle quota.
	var a []*jobset.JobSet
	for _, name := range []string{"a-1", "a-2"} {
		js := queuedJobSet(ns, name, "team-a", "1", "cohort")
		create(t, js)
		a = append(a, js)
	}
	for _, js := range a {
		testenv.Eventually(t, timeout, js.Name+" runs on the member", func() error {
			d := dispatchOf(t, js, "cohort-m")
			if d == nil || ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
				return fmt.Errorf("not running on cohort-m; conditions %+v", get(t, js).Status.Conditions)
			}
			return nil
		})
		report(t, dispatchOf(t, js, "cohort-m"), running(1))
	}
	for _, js := range a {
		testenv.Eventually(t, timeout, js.Name+"'s running Pod mirrored", func() error {
			if rs := get(t, js).Status.ReplicatedJobsStatus; len(rs) != 1 || rs[0].Active != 1 {
				return fmt.Errorf("replicatedJobsStatus %+v", rs)
			}
			return nil
		})
	}

	// team-b submits: Kueue reclaims its quota from team-a.
	b := queuedJobSet(ns, "b-1", "team-b", "1", "cohort")
	create(t, b)
	var reclaimed *jobset.JobSet
	testenv.Eventually(t, timeout, "one of team-a's copies told to suspend", func() error {
		for _, js := range a {
			if d := dispatchOf(t, js, "cohort-m"); d != nil && ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
				reclaimed = js
				return nil
			}
		}
		return fmt.Errorf("none of team-a's copies is suspended")
	})
	testenv.Consistently(t, 3*time.Second, "team-b waits while the borrower's Pods run", func() error {
		if ds := dispatches(t, b); len(ds) > 0 {
			return fmt.Errorf("b-1 dispatched while %s's Pods still run", reclaimed.Name)
		}
		return nil
	})
	report(t, dispatchOf(t, reclaimed, "cohort-m"), running(0))
	var bCopy *fleet.JobSetDispatch
	testenv.Eventually(t, timeout, "b-1 runs", func() error {
		if bCopy = dispatchOf(t, b, "cohort-m"); bCopy == nil || ptr.Deref(bCopy.Spec.JobSet.Spec.Suspend, false) {
			return fmt.Errorf("not running; suspend=%v conditions %+v", get(t, b).Spec.Suspend, get(t, b).Status.Conditions)
		}
		return nil
	})
	// What a user sees: one JobSet of each team runs; the reclaimed one
	// waits, suspended, where it ran.
	if got := runningOn(t, "cohort-m", append([]*jobset.JobSet{b}, a...)...); len(got) != 2 || got[0] != "b-1" {
		t.Errorf("running on cohort-m: %v, want b-1 and one of team-a's", got)
	}
	if ds := dispatches(t, reclaimed); len(ds) != 1 || !ptr.Deref(ds[0].Spec.JobSet.Spec.Suspend, false) {
		t.Errorf("%s: want its one copy suspended on cohort-m", reclaimed.Name)
	}

	// team-b's completes: team-a borrows again.
	report(t, bCopy, running(1))
	report(t, bCopy, completed)
	testenv.Eventually(t, timeout, reclaimed.Name+" resumes on its member", func() error {
		if d := dispatchOf(t, reclaimed, "cohort-m"); d == nil || ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
			return fmt.Errorf("not resumed; suspend=%v", get(t, reclaimed).Spec.Suspend)
		}
		return nil
	})
}

// runningOn names the JobSets whose copy on member is not suspended.
func runningOn(t *testing.T, member string, jss ...*jobset.JobSet) []string {
	t.Helper()
	var out []string
	for _, js := range jss {
		if d := dispatchOf(t, js, member); d != nil && d.DeletionTimestamp == nil && !ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
			out = append(out, js.Name)
		}
	}
	return out
}
