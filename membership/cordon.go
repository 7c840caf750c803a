package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Rotation is whether a member takes new work, as an operator states it
// with labels on the member's ClusterProfile on the hub. Like the
// out-of-service label, it is the operator's to set: the agent cannot
// change its own profile's labels.
type Rotation int

const (
	// InRotation: neither label; the member takes new work.
	InRotation Rotation = iota
	// Cordoned: fleet.CordonedLabel=true. The hub places nothing
	// new there; what runs there stays.
	Cordoned
	// Draining: Cordoned, and fleet.DrainingLabel=true, asking the
	// hub to move the member's JobSets that have not started.
	Draining
)

func (r Rotation) String() string {
	switch r {
	case Cordoned:
		return "cordoned"
	case Draining:
		return "cordoned and draining"
	default:
		return "in rotation"
	}
}

// labels is the label patch for r: "true" for the labels r sets, nil
// (removed, in a merge patch) for the others.
func (r Rotation) labels() map[string]any {
	set := func(on bool) any {
		if on {
			return "true"
		}
		return nil
	}
	return map[string]any{
		fleet.CordonedLabel: set(r >= Cordoned),
		fleet.DrainingLabel: set(r == Draining),
	}
}

// SetRotation puts the member's ClusterProfile in rotation r, with a merge
// patch of its two labels only, so the patch races with no other writer of
// the profile (join's labels, the agent's status). It needs only hub
// credentials that may patch ClusterProfiles, and refuses a profile the
// fleet does not manage. Setting the state it already has changes nothing.
func SetRotation(ctx context.Context, hub client.Client, opts Options, r Rotation) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	cp := &clusterinventory.ClusterProfile{}
	key := types.NamespacedName{Namespace: opts.InventoryNamespace, Name: opts.ClusterName}
	if err := hub.Get(ctx, key, cp); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("member %s is not in the fleet: no ClusterProfile %s", opts.ClusterName, key)
		}
		return fmt.Errorf("reading ClusterProfile %s: %w", key, err)
	}
	if m := cp.Spec.ClusterManager.Name; m != fleet.ClusterManagerName {
		return fmt.Errorf("ClusterProfile %s is managed by %q, not by the fleet (%s)", key, m, fleet.ClusterManagerName)
	}
	if RotationOf(cp) == r {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": r.labels()}})
	if err != nil {
		return err
	}
	if err := hub.Patch(ctx, cp, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("setting ClusterProfile %s %s: %w", key, r, err)
	}
	return nil
}

// RotationOf reads a profile's rotation the way the hub does
// (hub/inventory): draining counts only on a cordoned member.
func RotationOf(cp *clusterinventory.ClusterProfile) Rotation {
	switch {
	case cp.Labels[fleet.CordonedLabel] != "true":
		return InRotation
	case cp.Labels[fleet.DrainingLabel] == "true":
		return Draining
	default:
		return Cordoned
	}
}

// DrainOptions configure Drain.
type DrainOptions struct {
	// Timeout bounds the wait for the member to hold no dispatch; zero:
	// set the labels, print the dispatches once and return.
	Timeout time.Duration
	// Interval is how often the dispatches are listed; default 2s.
	Interval time.Duration
	// Out receives the progress: the member's dispatches, each time the
	// list changes. Nil: none.
	Out io.Writer
}

// ErrNotDrained is returned (wrapped, with what remains) when the member
// still holds dispatches at Drain's timeout.
var ErrNotDrained = errors.New("member not drained")

// Drain cordons the member and marks it draining, then shows its
// dispatches until none is left. Moving the JobSets that have not started
// is the hub's work (it withdraws them through the confirmed-stop path, as
// for a start deadline); started JobSets are left to finish, so a drain
// ends when they do, or at the timeout with ErrNotDrained and the list of
// what remains. Drain never deletes anything itself.
func Drain(ctx context.Context, hub client.Client, opts Options, d DrainOptions) error {
	if err := SetRotation(ctx, hub, opts, Draining); err != nil {
		return err
	}
	if d.Interval <= 0 {
		d.Interval = 2 * time.Second
	}
	out := d.Out
	if out == nil {
		out = io.Discard
	}
	deadline := time.Now().Add(d.Timeout)
	last := ""
	for {
		ds, err := memberDispatches(ctx, hub, opts.memberNamespace())
		if err != nil {
			return err
		}
		if table := dispatchTable(ds); table != last {
			fmt.Fprintf(out, "%s: %s\n%s", opts.ClusterName, drainSummary(ds), table)
			last = table
		}
		if unfinished(ds) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w: %s still holds %s (started JobSets are left to finish; run drain again to keep watching)",
				ErrNotDrained, opts.ClusterName, drainSummary(ds))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(d.Interval, time.Until(deadline))):
		}
	}
}

func drainSummary(ds []fleet.JobSetDispatch) string {
	if len(ds) == 0 {
		return "no dispatches left"
	}
	started, finished := 0, 0
	for i := range ds {
		switch {
		case finishedCopy(&ds[i]):
			finished++
		case memberReportsStarted(&ds[i]):
			started++
		}
	}
	if finished == len(ds) {
		return fmt.Sprintf("nothing left to run (%d finished)", finished)
	}
	return fmt.Sprintf("%d dispatches (%d started, %d not started, %d finished)", len(ds), started, len(ds)-started-finished, finished)
}

// unfinished counts the dispatches whose copy may still run or is being
// withdrawn. A finished copy's dispatch stays until its hub JobSet goes
// (deleted, or its TTL): nothing of it runs, so the member is drained
// without it.
func unfinished(ds []fleet.JobSetDispatch) int {
	n := 0
	for i := range ds {
		if !finishedCopy(&ds[i]) {
			n++
		}
	}
	return n
}

// finishedCopy is a dispatch whose copy ended on the member and that is
// not being withdrawn.
func finishedCopy(d *fleet.JobSetDispatch) bool {
	return d.Status.JobSetStatus.TerminalState != "" && d.DeletionTimestamp == nil &&
		!meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted)
}

// dispatchTable lists the dispatches, one line each, sorted by JobSet.
func dispatchTable(ds []fleet.JobSetDispatch) string {
	if len(ds) == 0 {
		return ""
	}
	rows := make([]string, 0, len(ds))
	for i := range ds {
		d := &ds[i]
		state := "not started"
		switch {
		case d.DeletionTimestamp != nil || meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted):
			state = "being withdrawn"
		case d.Status.JobSetStatus.TerminalState != "":
			state = "finished (" + string(d.Status.JobSetStatus.TerminalState) + ")"
		case memberReportsStarted(d):
			state = "started: left to finish"
		}
		rows = append(rows, fmt.Sprintf("  %s/%s\t%d\t%s\n", d.Spec.Origin.Namespace, d.Spec.Origin.Name, d.Spec.Epoch, state))
	}
	sort.Strings(rows)
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "  JOBSET\tEPOCH\tSTATE\n")
	for _, r := range rows {
		fmt.Fprint(w, r)
	}
	_ = w.Flush()
	return b.String()
}

// memberReportsStarted is the agent's own statement that a Pod of the
// dispatch ran (its Started condition) or that the copy ended. For
// display only: the hub decides what to move by its own reading.
func memberReportsStarted(d *fleet.JobSetDispatch) bool {
	return meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchStarted) ||
		d.Status.JobSetStatus.TerminalState != ""
}
