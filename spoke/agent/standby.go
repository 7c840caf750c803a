package agent

import (
	"cmp"
	"context"
	"errors"
	"os"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// StandbyFencer stops the fleet's copies on the member once the last
// renewal recorded there (LastRenewalLeaseName) is older than the fence
// timeout. It runs on every replica of the agent, from the process's
// start: it needs no leadership, no cache and no hub. The leader's own
// fencer starts only once the replica leads, which a crash-looping agent
// (killed before each leader-election Lease expires) never does, and its
// copies would run on past the hub's member-lost timeout.
//
// It only ever stops copies, which is safe from any replica; resuming them
// is the leader's, once its heartbeat reaches the hub again. With nothing
// recorded (the agent never renewed) it does nothing: a fresh agent runs
// nothing of the fleet.
type StandbyFencer struct {
	member      client.Client // live reads and writes, no cache
	clusterName func(context.Context) (string, error)
	timeout     time.Duration
	action      FenceAction
	clock       clock.PassiveClock
	record      *renewalRecord

	// Used by Start's goroutine only.
	memberClock memberClock
	measured    bool
	fence       *fencer // once the member's fleet name is known
	fenced      bool
	lastErr     string
}

// NewStandbyFencer returns the standby fencer of the agent configured by
// opts (FenceTimeout, FenceAction, Namespace, Identity, Clock; zero fields
// take their defaults). member must read live, not from a cache.
// clusterName says the member's name in the fleet, "" while it is not known
// (join has not written it yet); nil means opts.ClusterName. Add it to the
// member's manager; it does not need leader election.
func NewStandbyFencer(member client.Client, opts Options, clusterName func(context.Context) (string, error)) *StandbyFencer {
	d := DefaultOptions()
	if clusterName == nil {
		name := opts.ClusterName
		clusterName = func(context.Context) (string, error) { return name, nil }
	}
	identity := opts.Identity
	if identity == "" {
		host, _ := os.Hostname()
		identity = cmp.Or(opts.ClusterName, "standby") + "/" + host
	}
	var c clock.PassiveClock = clock.RealClock{}
	if opts.Clock != nil {
		c = opts.Clock
	}
	return &StandbyFencer{
		member:      member,
		clusterName: clusterName,
		timeout:     cmp.Or(max(opts.FenceTimeout, 0), d.FenceTimeout),
		action:      cmp.Or(opts.FenceAction, d.FenceAction),
		clock:       c,
		record: &renewalRecord{
			member:    member,
			reader:    member,
			namespace: cmp.Or(opts.Namespace, d.Namespace),
			identity:  identity,
		},
	}
}

// NeedLeaderElection: every replica fences, leader or not.
func (s *StandbyFencer) NeedLeaderElection() bool { return false }

// Start checks at once, then every fence tick, until ctx is done.
func (s *StandbyFencer) Start(ctx context.Context) error {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithName("standby-fencer"))
	t := time.NewTicker(fenceTick(s.timeout))
	defer t.Stop()
	for {
		s.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// readTimeout bounds one check's reads of the member.
const readTimeout = 10 * time.Second

func (s *StandbyFencer) check(ctx context.Context) {
	logger := log.FromContext(ctx)
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	recorded, err := s.record.load(rctx)
	if err != nil {
		s.fail(ctx, "Reading the last recorded renewal", err)
		return
	}
	if recorded.RenewTime.IsZero() {
		s.lastErr = ""
		return
	}
	if !s.measured {
		// One stamped write, then the local monotonic clock: the member
		// apiserver's clock without a write per tick. Read before the
		// write, so the time since the renewal is never underestimated.
		at := s.clock.Now()
		now, err := s.record.memberNow(rctx)
		if err != nil {
			s.fail(ctx, "Reading the member apiserver's clock", err)
			return
		}
		s.memberClock, s.measured = memberClock{stamp: now, local: at}, true
	}
	fence, since := standbyShouldFence(recorded, s.memberClock.now(s.clock), s.timeout)
	if !fence {
		if s.fenced {
			logger.Info("A renewal was recorded again within the fence timeout; the leader resumes what the hub still wants", "lastRenewal", recorded.RenewTime)
		}
		s.fenced, s.lastErr = false, ""
		return
	}
	f, err := s.fencer(rctx)
	if err != nil {
		s.fail(ctx, "Stopping fleet JobSets: naming the member", err)
		return
	}
	if !s.fenced {
		logger.Info("No renewal recorded on the member within the fence timeout; stopping fleet JobSets",
			"lastRenewal", recorded.RenewTime, "recordedAt", recorded.Stamp, "sinceLastRenewal", since, "fenceTimeout", s.timeout, "action", s.action)
	}
	s.fenced, s.lastErr = true, ""
	// Every tick while fenced, with live reads: a leader's reconcile or
	// another replica may have changed a copy since.
	f.stop(ctx)
}

// fencer is the fencer that stops this member's copies, once the member's
// fleet name is known.
func (s *StandbyFencer) fencer(ctx context.Context) (*fencer, error) {
	if s.fence != nil {
		return s.fence, nil
	}
	name, err := s.clusterName(ctx)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("the member's name in the fleet is not known yet: no --cluster-name, and no name in the hub kubeconfig Secret")
	}
	s.fence = &fencer{
		member:          s.member,
		memberNamespace: fleet.MemberNamespace(name),
		timeout:         s.timeout,
		action:          s.action,
		errors:          agentErrors.WithLabelValues(name, "fence"),
	}
	return s.fence, nil
}

// fail logs err unless it repeats the last one (a member apiserver that is
// down fails every tick the same way).
func (s *StandbyFencer) fail(ctx context.Context, msg string, err error) {
	if ctx.Err() != nil {
		return
	}
	if err.Error() != s.lastErr {
		log.FromContext(ctx).Error(err, msg+"; retrying every fence tick", "fenceTick", fenceTick(s.timeout))
	}
	s.lastErr = err.Error()
}

// standbyShouldFence reports whether the copies must be stopped when the
// member apiserver's clock reads memberNow, and how old the recorded
// renewal then is. Nothing recorded: the agent never renewed, so no copy
// of the fleet can run here, and nothing is done. A renewal that cannot be
// measured on the member apiserver's clock (a stamp missing) counts as too
// old, as it does for a new leader.
func standbyShouldFence(recorded recordedRenewal, memberNow time.Time, timeout time.Duration) (bool, time.Duration) {
	if recorded.RenewTime.IsZero() {
		return false, 0
	}
	since, ok := SinceRecordedRenewal(recorded.Stamp, memberNow)
	if !ok {
		return true, timeout
	}
	return ShouldFence(since, timeout), since
}

// memberClock reads the member apiserver's clock from one of its stamps
// and the local clock read just before the stamped write, advancing with
// the local monotonic clock.
type memberClock struct {
	stamp time.Time
	local time.Time
}

// now is the member apiserver's clock as of now on local; zero when the
// write carried no stamp.
func (m memberClock) now(local clock.PassiveClock) time.Time {
	if m.stamp.IsZero() {
		return time.Time{}
	}
	return m.stamp.Add(local.Since(m.local))
}
