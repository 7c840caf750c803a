package testenv

import (
	"fmt"
	"testing"
	"time"
)

// DefaultPollInterval is how often Eventually, Consistently and Poll call
// their check unless Every says otherwise.
const DefaultPollInterval = 100 * time.Millisecond

// PollOption changes how Eventually, Consistently and Poll call their check.
type PollOption func(*pollOptions)

type pollOptions struct {
	interval time.Duration
}

// Every calls the check every d instead of every DefaultPollInterval; use it
// for checks that are expensive, such as ones that run kubectl.
func Every(d time.Duration) PollOption { return func(o *pollOptions) { o.interval = d } }

func pollInterval(opts []PollOption) time.Duration {
	o := pollOptions{interval: DefaultPollInterval}
	for _, opt := range opts {
		opt(&o)
	}
	return o.interval
}

// Poll calls check until it returns nil, and returns nil; or, once timeout
// has passed, the last error check returned, wrapped with the timeout. The
// first call is immediate.
func Poll(timeout time.Duration, check func() error, opts ...PollOption) error {
	if err := poll(timeout, check, opts); err != nil {
		return fmt.Errorf("after %s: %w", timeout, err)
	}
	return nil
}

// poll returns nil, or the last error check returned before timeout.
func poll(timeout time.Duration, check func() error, opts []PollOption) error {
	interval := pollInterval(opts)
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// Eventually fails the test unless check returns nil within timeout. The
// failure names what the test waited for and the last error check
// returned, which should say what it saw instead:
//
//	timed out after 30s waiting for <what>: <last error>
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error, opts ...PollOption) {
	t.Helper()
	if err := poll(timeout, check, opts); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}

// Consistently fails the test as soon as check returns an error, if it does
// within d, naming what had to hold and when it stopped holding:
//
//	<what> stopped holding after 1.2s of 3s: <error>
func Consistently(t testing.TB, d time.Duration, what string, check func() error, opts ...PollOption) {
	t.Helper()
	interval := pollInterval(opts)
	start := time.Now()
	for time.Since(start) < d {
		if err := check(); err != nil {
			t.Fatalf("%s stopped holding after %s of %s: %v", what, time.Since(start).Round(time.Millisecond), d, err)
		}
		time.Sleep(interval)
	}
}
