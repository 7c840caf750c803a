package fleetctl

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func newGetCommand(o *Options) *cobra.Command {
	var allNamespaces bool
	var output string
	get := &cobra.Command{
		Use:   "get",
		Short: "List fleet resources",
	}
	cmd := &cobra.Command{
		Use:     "jobsets [NAME...]",
		Aliases: []string{"jobset", "js"},
		Short:   "List JobSets with the member each runs on and why a waiting one waits",
		Example: `  # JobSets of the current namespace
  kubectl fleet get jobsets

  # Of every namespace, with their epochs and the hub's message
  kubectl fleet get jobsets -A -o wide`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ns := ""
			if !allNamespaces {
				if ns, err = o.namespace(); err != nil {
					return err
				}
			}
			list, err := listJobSets(cmd.Context(), c, ns, args)
			if err != nil {
				return err
			}
			if output == outputJSON || output == outputYAML {
				return printObject(list, output, o.Out)
			}
			if len(list.Items) == 0 {
				if ns == "" {
					fmt.Fprintln(o.ErrOut, "No JobSets found.")
				} else {
					fmt.Fprintf(o.ErrOut, "No JobSets found in %s namespace.\n", ns)
				}
				return nil
			}
			return printTable(JobSetTable(list.Items, o.Now()), output == outputWide, allNamespaces, o.Out)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the JobSets of every namespace.")
	addOutputFlag(cmd, &output)
	get.AddCommand(cmd)
	return get
}

func listJobSets(ctx context.Context, c client.Client, ns string, names []string) (*jobset.JobSetList, error) {
	list := &jobset.JobSetList{}
	if len(names) == 0 {
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		return list, nil
	}
	for _, name := range names {
		js := &jobset.JobSet{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, js); err != nil {
			return nil, err
		}
		list.Items = append(list.Items, *js)
	}
	return list, nil
}

// JobSetTable is `get jobsets`: NAME, CLUSTER, STATE, RESTARTS, QUEUE, AGE;
// wide adds EPOCH and MESSAGE (the Dispatched condition's).
func JobSetTable(items []jobset.JobSet, now time.Time) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"},
		{Name: "Cluster", Type: "string"},
		{Name: "State", Type: "string"},
		{Name: "Restarts", Type: "integer"},
		{Name: "Queue", Type: "string"},
		{Name: "Age", Type: "string"},
		{Name: "Epoch", Type: "integer", Priority: 1},
		{Name: "Message", Type: "string", Priority: 1},
	}}
	for i := range items {
		js := &items[i]
		fs := fleetStatus(js)
		msg := "<none>"
		if c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched); c != nil && c.Message != "" {
			msg = oneLine(c.Message)
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{js.Name, orNone(fs.Cluster), State(js), int64(js.Status.Restarts), Queue(js), age(js.CreationTimestamp, now), fs.Epoch, msg},
			Object: runtime.RawExtension{Object: js},
		})
	}
	return t
}

func fleetStatus(js *jobset.JobSet) jobset.FleetStatus {
	if js.Status.Fleet == nil {
		return jobset.FleetStatus{}
	}
	return *js.Status.Fleet
}

// State is the JobSet's state as a user asks for it: Completed or Failed
// once finished, else Suspended, Running (Dispatched=True) or Pending;
// "(stale)" when the hub says its member's status may be out of date.
func State(js *jobset.JobSet) string {
	if s := js.Status.TerminalState; s != "" {
		return s
	}
	state := "Pending"
	switch {
	case ptr.Deref(js.Spec.Suspend, false):
		state = "Suspended"
	case meta.IsStatusConditionTrue(js.Status.Conditions, fleet.ConditionDispatched):
		state = "Running"
	}
	if meta.IsStatusConditionTrue(js.Status.Conditions, fleet.ConditionMemberStatusStale) {
		state += " (stale)"
	}
	return state
}

// queuePosition finds the place at the start of a waiting JobSet's
// Dispatched message, as hub/dispatch writes it: "Queued: 3rd; ",
// "Queued: within the first 100; " (earlier hubs: "Queued: 3rd of 12; ").
var queuePosition = regexp.MustCompile(`^Queued: (?:within the )?([^;]+); `)

// Queue is where a JobSet stands in the fleet queue: "-" once dispatched
// or finished; for a waiting one the Dispatched reason with its position
// ("NoFit 1st", "Queued 2nd", "Queued first 100", "AwaitingFence",
// "StartTimeout");
// AwaitingAdmission for a suspended JobSet that was never placed (held by
// Kueue or a user); Pending before the hub has looked at it.
func Queue(js *jobset.JobSet) string {
	if js.Status.TerminalState != "" {
		return "-"
	}
	c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched)
	switch {
	case c == nil && ptr.Deref(js.Spec.Suspend, false):
		return "AwaitingAdmission"
	case c == nil:
		return "Pending"
	case c.Status == metav1.ConditionTrue:
		if s := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionMemberStatusStale); s != nil && s.Status == metav1.ConditionTrue && s.Reason == fleet.ReasonAwaitingFence {
			return s.Reason
		}
		return "-"
	}
	if m := queuePosition.FindStringSubmatch(c.Message); m != nil {
		return c.Reason + " " + m[1]
	}
	return c.Reason
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// oneLine keeps a message on one table line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
