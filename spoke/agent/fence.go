package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// FenceAction is what a fenced agent does to its fleet JobSets.
type FenceAction string

const (
	// FenceSuspend suspends them: Jobs and Pods go away, the JobSets (and
	// their restart counters) stay, and the agent resumes them if the hub
	// still wants them after reconnecting.
	FenceSuspend FenceAction = "suspend"
	// FenceDelete deletes them.
	FenceDelete FenceAction = "delete"
)

// ParseFenceAction parses a --fence-action value.
func ParseFenceAction(s string) (FenceAction, error) {
	switch a := FenceAction(s); a {
	case FenceSuspend, FenceDelete:
		return a, nil
	}
	return "", fmt.Errorf("fence action %q: want %q or %q", s, FenceSuspend, FenceDelete)
}

// ShouldFence reports whether an agent whose last successful heartbeat was
// sinceRenewal ago must stop its fleet JobSets. The hub re-dispatches only
// after memberLostTimeout > fenceTimeout, so by then this copy is stopped.
func ShouldFence(sinceRenewal, fenceTimeout time.Duration) bool {
	return sinceRenewal >= fenceTimeout
}

// StampResolution is the resolution of the member apiserver's write stamps
// (managedFields times are stored in whole seconds).
const StampResolution = time.Second

// SinceRecordedRenewal is how long before a fresh write to the member the
// previous agent process recorded its last renewal there, measured on one
// clock: the member apiserver's, which stamped both writes (recorded and
// now). Both stamps are cut to StampResolution, so the result is rounded
// up by it: an agent may fence up to two stamps early after a restart, but
// never late. False when a stamp is missing: then nothing measured on one
// clock says how long ago the renewal was.
func SinceRecordedRenewal(recorded, now time.Time) (time.Duration, bool) {
	if recorded.IsZero() || now.IsZero() {
		return 0, false
	}
	return max(now.Sub(recorded), 0) + StampResolution, true
}

// FenceActions says which fleet JobSets a fenced agent suspends and which it
// deletes. Fleet JobSets are those annotated with a dispatch of this
// member's hub namespace; anything else on the member is not the fleet's.
// A finished copy runs nothing and keeps its result for the hub, so it is
// left alone. A copy already being deleted in the background, whose Jobs
// (counted in jobs) would run until it is gone, is deleted again in the
// foreground.
func FenceActions(jobSets []jobset.JobSet, jobs map[types.UID]int, memberNamespace string, action FenceAction) (suspend, del []*jobset.JobSet) {
	for i := range jobSets {
		js := &jobSets[i]
		if !isFleetCopy(js, memberNamespace) || js.Status.TerminalState != "" {
			continue
		}
		if js.DeletionTimestamp != nil {
			if jobs[js.UID] > 0 && !controllerutil.ContainsFinalizer(js, metav1.FinalizerDeleteDependents) {
				del = append(del, js)
			}
			continue
		}
		switch action {
		case FenceDelete:
			del = append(del, js)
		default:
			if !js.IsSuspended() {
				suspend = append(suspend, js)
			}
		}
	}
	return suspend, del
}

// isFleetCopy reports whether js was made for a dispatch in memberNamespace.
func isFleetCopy(js *jobset.JobSet, memberNamespace string) bool {
	ns, _, ok := fleet.DispatchOf(js)
	return ok && ns == memberNamespace
}

// liveness tracks, on the local monotonic clock, when the last heartbeat
// succeeded and whether the agent is fenced.
type liveness struct {
	clock clock.PassiveClock

	mu          sync.Mutex
	lastRenewal time.Time
	fenced      bool
}

func newLiveness(c clock.PassiveClock) *liveness {
	// Start counts as a renewal until the agent has read the last renewal
	// recorded on the member (restore): only an agent that never renewed
	// counts from its start.
	return &liveness{clock: c, lastRenewal: c.Now()}
}

// markRenewed records a renewal sent at the given local time.
func (l *liveness) markRenewed(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sent.After(l.lastRenewal) {
		l.lastRenewal = sent
	}
}

// restore sets the last renewal to elapsed before at (a reading of the
// local clock): what a previous agent process recorded. From here on it is
// measured on the monotonic clock.
func (l *liveness) restore(at time.Time, elapsed time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastRenewal = at.Add(-elapsed)
}

func (l *liveness) sinceRenewal() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.clock.Since(l.lastRenewal)
}

// LastRenewal is when the heartbeat last succeeded (local clock).
func (l *liveness) LastRenewal() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastRenewal
}

func (l *liveness) isFenced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fenced
}

// fencer stops fleet JobSets while the agent is cut off from the hub and
// asks for a full resync when it is back.
type fencer struct {
	member          client.Client
	memberNamespace string
	timeout         time.Duration
	action          FenceAction
	live            *liveness
	resync          func(context.Context)
	errors          prometheus.Counter
}

// fenceTick is how often a fencer checks: a tenth of the fence timeout,
// within [100ms, 1s].
func fenceTick(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 100*time.Millisecond), time.Second)
}

// stopTimeout bounds stopping the copies once a fence is decided, which
// runs on even while the process shuts down.
const stopTimeout = 5 * time.Second

func (f *fencer) run(ctx context.Context) {
	t := time.NewTicker(fenceTick(f.timeout))
	defer t.Stop()
	for {
		// At once, not a tick after start: a restarted leader may be
		// past its fence timeout already.
		f.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *fencer) check(ctx context.Context) {
	logger := log.FromContext(ctx)
	since := f.live.sinceRenewal()
	fence := ShouldFence(since, f.timeout)

	f.live.mu.Lock()
	was := f.live.fenced
	f.live.fenced = fence
	f.live.mu.Unlock()

	switch {
	case fence && !was:
		logger.Info("No heartbeat reached the hub within the fence timeout; stopping fleet JobSets",
			"sinceLastRenewal", since, "fenceTimeout", f.timeout, "action", f.action)
	case !fence && was:
		logger.Info("Heartbeat reaches the hub again; resyncing every dispatch")
		f.resync(ctx)
	}
	if fence {
		// Enforced on every tick, not once: a reconcile that raced the
		// transition may have resumed a copy.
		f.stop(ctx)
	}
}

// stop stops the fleet copies, to the end even if ctx is cancelled
// meanwhile: a fence decided just before the process shuts down (a crash
// loop, a rollout) must not leave copies running for the hub to start
// again elsewhere.
func (f *fencer) stop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := f.enforce(ctx); err != nil {
		f.errors.Inc()
		log.FromContext(ctx).Error(err, "Stopping fleet JobSets")
	}
}

func (f *fencer) enforce(ctx context.Context) error {
	// Every JobSet, not only those labelled as copies: which ones are the
	// fleet's is the dispatch annotation's to say (isFleetCopy), and a
	// copy a filter missed would run on while the hub moves it.
	var list jobset.JobSetList
	if err := f.member.List(ctx, &list); err != nil {
		return fmt.Errorf("listing member JobSets: %w", err)
	}
	jobs := map[types.UID]int{}
	for i := range list.Items {
		if js := &list.Items[i]; js.DeletionTimestamp != nil && isFleetCopy(js, f.memberNamespace) {
			n, err := countJobs(ctx, f.member, js)
			if err != nil {
				return err
			}
			jobs[js.UID] = n
		}
	}
	var byKueue map[types.UID]bool
	if f.action == FenceSuspend {
		// The member's Kueue stops the copies it manages, through their
		// Workloads: it would resume them if the agent suspended them.
		var err error
		if byKueue, err = fenceKueueCopies(ctx, f.member, list.Items, f.memberNamespace); err != nil {
			return err
		}
	}
	suspend, del := FenceActions(list.Items, jobs, f.memberNamespace, f.action)
	logger := log.FromContext(ctx)
	for _, js := range suspend {
		if byKueue[js.UID] {
			continue
		}
		patch := client.MergeFrom(js.DeepCopy())
		js.Spec.Suspend = ptr.To(true)
		if err := f.member.Patch(ctx, js, patch); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("suspending JobSet %s/%s: %w", js.Namespace, js.Name, err)
		}
		logger.Info("Suspended fleet JobSet while fenced", "jobset", client.ObjectKeyFromObject(js))
	}
	for _, js := range del {
		if js.DeletionTimestamp == nil && controllerutil.ContainsFinalizer(js, fleet.ReportFinalizer) {
			// The fencer's own deletion of an unfinished copy must not wait
			// for the hub. Dropping ReportFinalizer first is safe: deleted
			// in the foreground, the copy still disappears only after its
			// Jobs. What is lost are restarts since the last report; a
			// finished copy, whose result matters, is never deleted here.
			patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
			controllerutil.RemoveFinalizer(js, fleet.ReportFinalizer)
			if err := f.member.Patch(ctx, js, patch); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("removing finalizer from JobSet %s/%s: %w", js.Namespace, js.Name, err)
			}
		}
		if err := deleteJobSet(ctx, f.member, js); err != nil {
			return err
		}
		logger.Info("Deleted fleet JobSet while fenced", "jobset", client.ObjectKeyFromObject(js))
	}
	return nil
}

// countJobs counts the Jobs js controls, from the member cache the JobSet
// controller's Job informer fills.
func countJobs(ctx context.Context, c client.Reader, js *jobset.JobSet) (int, error) {
	var jobs batchv1.JobList
	if err := c.List(ctx, &jobs, client.InNamespace(js.Namespace), client.MatchingLabels{jobset.JobSetNameKey: js.Name}); err != nil {
		return 0, fmt.Errorf("listing Jobs of member JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
	n := 0
	for i := range jobs.Items {
		if owner := metav1.GetControllerOf(&jobs.Items[i]); owner != nil && owner.UID == js.UID {
			n++
		}
	}
	return n, nil
}

// deleteJobSet deletes a member JobSet in the foreground, so it disappears
// only after its Jobs: its absence then means nothing of it runs any more.
// The UID precondition keeps a same-named newer JobSet safe.
func deleteJobSet(ctx context.Context, c client.Client, js *jobset.JobSet) error {
	err := c.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationForeground), client.Preconditions{UID: &js.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting JobSet %s/%s: %w", js.Namespace, js.Name, err)
	}
	return nil
}
