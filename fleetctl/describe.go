package fleetctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// MaxEvents bounds the events describe shows.
const MaxEvents = 20

// hubPlacementReasons are the reasons of the hub's events that tell where
// a JobSet went and why it moved.
var hubPlacementReasons = map[string]bool{
	fleet.ReasonDispatched: true, fleet.ReasonRedispatched: true, fleet.ReasonMemberLost: true,
	fleet.ReasonStartTimeout: true, fleet.ReasonDispatchRefused: true, fleet.ReasonAwaitingFence: true,
	fleet.ReasonAdopted: true, fleet.ReasonCopyStopped: true, fleet.ReasonReleased: true,
	fleet.ReasonDispatchDeleted: true, fleet.ReasonDispatchFailed: true, fleet.ReasonVolumesNotMoved: true,
}

func newDescribeCommand(o *Options) *cobra.Command {
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Show a fleet resource in detail",
	}
	describe.AddCommand(&cobra.Command{
		Use:     "jobset NAME",
		Aliases: []string{"jobsets", "js"},
		Short:   "Show where a JobSet runs, each member's verdict, its dispatch history and events",
		Example: `  kubectl fleet describe jobset trainer
  kubectl fleet describe jobset trainer -n research --context hub`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			view, err := readJobSetView(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			return DescribeJobSet(o.Out, view, o.Now())
		},
	})
	return describe
}

// JobSetView is what the hub knows of one JobSet, as read with the user's
// credentials. Parts the user may not read are nil with the reason in
// the matching *Err field.
type JobSetView struct {
	JobSet   *jobset.JobSet
	Decision *clusterinventory.PlacementDecision
	// DecisionErr says why Decision is nil ("" when the hub has published
	// none yet).
	DecisionErr string
	Events      []corev1.Event
	EventsErr   string
}

func readJobSetView(ctx context.Context, c client.Client, ns, name string) (JobSetView, error) {
	v := JobSetView{JobSet: &jobset.JobSet{}}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, v.JobSet); err != nil {
		return v, err
	}
	pd := &clusterinventory.PlacementDecision{}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pd); {
	case err == nil:
		v.Decision = pd
	case apierrors.IsNotFound(err):
	default:
		v.DecisionErr = FormatError(err)
	}
	events := &corev1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(ns), client.MatchingFields{"involvedObject.uid": string(v.JobSet.UID)}); err != nil {
		v.EventsErr = FormatError(err)
	} else {
		v.Events = events.Items
		sort.SliceStable(v.Events, func(a, b int) bool { return eventTime(v.Events[a]).Before(eventTime(v.Events[b])) })
	}
	return v, nil
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// DescribeJobSet writes `describe jobset`.
func DescribeJobSet(out io.Writer, v JobSetView, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	js := v.JobSet
	fs := fleetStatus(js)
	fmt.Fprintf(w, "Name:\t%s\n", js.Name)
	fmt.Fprintf(w, "Namespace:\t%s\n", js.Namespace)
	fmt.Fprintf(w, "Created:\t%s (%s ago)\n", js.CreationTimestamp.UTC().Format(time.RFC3339), age(js.CreationTimestamp, now))
	fmt.Fprintf(w, "State:\t%s\n", State(js))
	fmt.Fprintf(w, "Cluster:\t%s\n", orNone(fs.Cluster))
	fmt.Fprintf(w, "Epoch:\t%d\n", fs.Epoch)
	fmt.Fprintf(w, "Queue:\t%s\n", Queue(js))
	fmt.Fprintf(w, "Restarts:\t%d (carried from earlier placements: %d)\n", js.Status.Restarts, fs.RestartsCarried)

	fmt.Fprintf(w, "\nConditions:\n")
	if len(js.Status.Conditions) == 0 {
		fmt.Fprintf(w, "  <none>\n")
	} else {
		fmt.Fprintf(w, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE\n")
		for _, c := range js.Status.Conditions {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, age(c.LastTransitionTime, now), oneLine(c.Message))
		}
	}

	fmt.Fprintf(w, "\nPlacement (PlacementDecision %s/%s):\n", js.Namespace, js.Name)
	writeDecision(w, v)

	fmt.Fprintf(w, "\nDispatch history:\n")
	writeHistory(w, v, now)

	fmt.Fprintf(w, "\nMember copy (as the hub mirrors it from the member's report):\n")
	writeMemberCopy(w, js)

	fmt.Fprintf(w, "\nEvents:\n")
	writeEvents(w, v, now, "  ", func(corev1.Event) bool { return true })
	return w.Flush()
}

func writeDecision(w io.Writer, v JobSetView) {
	switch {
	case v.DecisionErr != "":
		fmt.Fprintf(w, "  <not readable: %s>\n", v.DecisionErr)
		return
	case v.Decision == nil:
		fmt.Fprintf(w, "  <none: the hub has not published a decision yet>\n")
		return
	}
	chosen := "<none>"
	for _, d := range v.Decision.Decisions {
		chosen = d.ClusterProfileRef.Name + " (" + oneLine(d.Reason) + ")"
	}
	fmt.Fprintf(w, "  Chosen:\t%s\n", chosen)
	note, verdicts := SplitVerdicts(v.Decision.Annotations[placement.ReasonsAnnotation], nil)
	if note != "" {
		fmt.Fprintf(w, "  Note:\t%s\n", note)
	}
	if len(verdicts) == 0 {
		return
	}
	fmt.Fprintf(w, "  MEMBER\tVERDICT\n")
	for _, vd := range verdicts {
		fmt.Fprintf(w, "  %s\t%s\n", vd.Member, oneLine(vd.Reason))
	}
}

func writeHistory(w io.Writer, v JobSetView, now time.Time) {
	js := v.JobSet
	fs := fleetStatus(js)
	switch {
	case fs.Cluster != "":
		started := "no Pod started yet"
		if fs.StartedEpoch == fs.Epoch && fs.Epoch > 0 {
			started = "started"
		}
		since := ""
		if fs.StartDeadlineSince != nil {
			since = fmt.Sprintf(", since %s ago", age(*fs.StartDeadlineSince, now))
		}
		fmt.Fprintf(w, "  Current:\tepoch %d on %s%s (%s)\n", fs.Epoch, fs.Cluster, since, started)
	case fs.Epoch > 0:
		fmt.Fprintf(w, "  Current:\tnot placed (last epoch %d)\n", fs.Epoch)
	default:
		fmt.Fprintf(w, "  Current:\tnever placed\n")
	}
	if len(fs.Withdrawals) > 0 {
		fmt.Fprintf(w, "  Withdrawn (no Pod started within the start deadline):\n")
		fmt.Fprintf(w, "    EPOCH\tMEMBER\tWITHDRAWN\n")
		for _, wd := range fs.Withdrawals {
			fmt.Fprintf(w, "    %d\t%s\t%s ago\n", wd.Epoch, wd.Cluster, age(wd.Time, now))
		}
	}
	fmt.Fprintf(w, "  Placements and moves (hub events):\n")
	writeEvents(w, v, now, "    ", func(e corev1.Event) bool { return hubPlacementReasons[e.Reason] })
}

func writeMemberCopy(w io.Writer, js *jobset.JobSet) {
	if len(js.Status.ReplicatedJobsStatus) == 0 {
		fmt.Fprintf(w, "  <no Jobs reported>\n")
	} else {
		fmt.Fprintf(w, "  REPLICATED JOB\tREADY\tACTIVE\tSUCCEEDED\tFAILED\tSUSPENDED\n")
		for _, r := range js.Status.ReplicatedJobsStatus {
			fmt.Fprintf(w, "  %s\t%d\t%d\t%d\t%d\t%d\n", r.Name, r.Ready, r.Active, r.Succeeded, r.Failed, r.Suspended)
		}
	}
	fmt.Fprintf(w, "  The hub holds no member credentials: it knows Job counts, not Pods or the\n")
	fmt.Fprintf(w, "  member's events. Per-Pod phases, logs and exec will come through the agent's\n")
	fmt.Fprintf(w, "  connection to the hub (kubectl fleet logs/exec, not in this version).\n")
}

func writeEvents(w io.Writer, v JobSetView, now time.Time, prefix string, keep func(corev1.Event) bool) {
	if v.EventsErr != "" {
		fmt.Fprintf(w, "%s<not readable: %s>\n", prefix, v.EventsErr)
		return
	}
	var shown []corev1.Event
	for _, e := range v.Events {
		if keep(e) {
			shown = append(shown, e)
		}
	}
	if len(shown) > MaxEvents {
		shown = shown[len(shown)-MaxEvents:]
	}
	if len(shown) == 0 {
		fmt.Fprintf(w, "%s<none>\n", prefix)
		return
	}
	fmt.Fprintf(w, "%sTYPE\tREASON\tAGE\tMESSAGE\n", prefix)
	for _, e := range shown {
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(w, "%s%s\t%s\t%s%s\t%s\n", prefix, e.Type, e.Reason, age(metav1.NewTime(eventTime(e)), now), count, oneLine(e.Message))
	}
}
